#!/usr/bin/env python3
"""Writes corpus.json: the tokenizer test corpus (hand-picked cases plus deterministic mixes)."""
import json
import random
import sys

HAND = [
    "", " ", "  ", "\n", "\t", "\r\n", "Hello world", "Hello, world!", " leading space",
    "trailing space ", "   three leading", "double  space", "I'm here, you're there, it's fine.",
    "I'LL GO, SHE'D SAY, THEY'VE DONE, WE'RE 'RE 'S", "don't can't won't shouldn't",
    "The quick brown fox jumps over the lazy dog.", "ALL CAPS TEXT", "MiXeD cAsE wOrDs",
    "camelCaseIdentifier snake_case_name kebab-case-name", "1234567890", "3.14159 2.71828 -42 +7",
    "1,000,000 and 10_000 and 0x1F", "Phone: +1 (555) 123-4567", "2024-01-15T12:34:56Z",
    "你好，世界！今天天气很好。", "我爱自然语言处理和机器学习", "日本語のテキストです。カタカナとひらがな",
    "한국어 텍스트 처리", "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок",
    "مرحبا بالعالم", "السلام عليكم ورحمة الله", "नमस्ते दुनिया", "हिन्दी भाषा में पाठ",
    "Ελληνικά γράμματα", "עברית טקסט", "ภาษาไทย", "Tiếng Việt có dấu",
    "emoji 😀😃😄 done", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🏳️‍🌈 flag", "❤️‍🔥", "🇺🇸🇯🇵🇩🇪",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1:\n\tprint('tab')\n", "#include <vector>\nint main() { return 0; }",
    "const f = (a, b) => a ?? b;", "SELECT * FROM users WHERE id = 42;",
    "<html><body><p>Hi</p></body></html>", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "a" * 300, " " * 50, "\n\n\n\n", "x\n\n\ny", "word      word", "\t\t\ttabs", "  \n  \n  ",
    "end with newline\n", "\r\r\r", "mixed \r\n line \n endings \r",
    "<|endoftext|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
    "text<|endoftext|>more text", "<s>bos inside</s> text <unk>", " <s> spaced </s> ",
    "<|im_start|><|im_end|>", "<|im_start", "<0x41> literal byte token",
    "café naïve résumé", "e\u0301 decomposed accent", "A\u030a angstrom", "\u1100\u1161\u11a8 jamo",
    "\ufb01 ligature", "\u212b angstrom sign", "K\u212a kelvin", "x'\u017f long s",
    "nbsp\u00a0here", "bom\ufeffinside", "nel\u0085line", "ls\u2028ps\u2029", "ideographic\u3000space",
    "zero\u200bwidth", "soft\u00adhyphen", "thin\u2009space", "superscript x\u00b2 \u00bd \u2167",
    "Arabic digits \u0661\u0662\u0663", "fullwidth \uff11\uff12\uff13 \uff21\uff22\uff23",
    "math \u2200x\u2208\u211d: x\u00b2 \u2265 0", "\u2581 metaspace char", "\u2581\u2581double",
    "tab\tseparated\tvalues", "snowman \u2603 and \U0001f600", "\U0001d400\U0001d401 math bold",
    "\U00020000 cjk ext b", "'s at start", "'''triple quotes'''", "...!!!???", "--- === ***",
    "$100 \u20ac50 \u00a330 \u00a5100", "user@example.com https://example.org/path?q=1&r=2",
    "C:\\Windows\\System32", "ends with punctuation!", "\"quoted\" and 'single'",
]

FRAGMENTS = [
    "the", "model", "experts", "routing", "token", "Mixture", "of", "Experts", "GPU", "node",
    "latency", "bandwidth", "42", "3.5", "1e-5", "100%", "中文", "数据", "模型", "東京", "Москва",
    "данные", "بيانات", "डेटा", "😀", "🚀", "👍🏻", "🧑‍🚀", "don't", "we'll", "it's", "I'd",
    "x=1", "f(x)", "a[i]", "->", "::", "&&", "||", "/* c */", "// note", "#", "@", "\\n",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "café", "naïve", "Ærø",
    "ß", "ﬀ", "Ω", "µ", "\u00a0", "\u3000", "\u200d", "ǅ", "İstanbul", "ΣΊΣΥΦΟΣ",
]
SEPARATORS = [" ", "  ", "", "\n", "\t", ", ", ". ", "\n\n", "   ", " \n", "\r\n", "-", "_", "/"]

ENGLISH = (
    "Mixture-of-experts models route every token to a few experts chosen by a learned gate. "
    "Serving them across many machines means moving activations over the network quickly, "
    "keeping hot experts replicated, and migrating cold ones without losing a single request. "
)


def generated(count):
    rng = random.Random(20240607)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 14)):
            parts.append(rng.choice(FRAGMENTS))
            parts.append(rng.choice(SEPARATORS))
        if rng.random() < 0.2:
            parts.insert(0, " " * rng.randint(1, 6))
        if rng.random() < 0.15:
            parts.append(rng.choice(["\n" * rng.randint(1, 5), " " * rng.randint(1, 20), "\t"]))
        out.append("".join(parts))
    return out


def main():
    corpus = HAND + generated(260) + [ENGLISH * 3, ENGLISH.upper(), (ENGLISH + "\n") * 5]
    json.dump(corpus, open(sys.argv[1], "w", encoding="utf-8"), ensure_ascii=False, indent=0)
    print(f"{len(corpus)} strings")


if __name__ == "__main__":
    main()
