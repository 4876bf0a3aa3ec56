"""Byte-level BPE (GPT-2 style): training, encoding, decoding and the HF tokenizer.json.

The encoder mirrors what ExpertMesh's C++ tokenizer does with the tokenizer.json written here
(ByteLevel pre-tokenizer with the GPT-2 split, no normalizer, merges applied lowest rank first,
leftmost on ties), so ids are equal id for id; train.py checks that against `xmesh tokenize`.
"""
import heapq
import unicodedata
from collections import Counter, defaultdict

EOT = "<|endoftext|>"

# The white space of ECMAScript `\s`: what the C++ regex (PCRE2 with JS semantics) uses for `\s`.
_JS_SPACE = set("\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff")
_JS_SPACE.update(chr(c) for c in range(0x2000, 0x200B))
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (printable bytes map to themselves)."""
    table, n = {}, 0
    for b in range(256):
        printable = ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or b >= 0xAE
        table[b] = chr(b) if printable else chr(256 + n)
        n += 0 if printable else 1
    return table


BYTE_CHAR = bytes_to_unicode()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def _kind(c):
    """'s' white space, 'L' letter, 'N' number, 'o' anything else (as \\s, \\p{L}, \\p{N})."""
    if c in _JS_SPACE:
        return "s"
    cat = unicodedata.category(c)[0]
    return cat if cat in "LN" else "o"


def pretokenize(text):
    """The GPT-2 split, as a hand-written scanner of
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    (leftmost-first alternation; `re` has no \\p{..} and the `regex` package is not installed)."""
    out, i, n = [], 0, len(text)
    kinds = [_kind(c) for c in text]
    while i < n:
        if text[i] == "'":
            hit = next((c for c in _CONTRACTIONS if text.startswith(c, i + 1)), None)
            if hit:
                out.append(text[i:i + 1 + len(hit)])
                i += 1 + len(hit)
                continue
        start = i + 1 if text[i] == " " and i + 1 < n and kinds[i + 1] != "s" else i
        k = kinds[start]
        if k != "s":  # optional space, then a run of one class (L, N or other)
            j = start + 1
            while j < n and kinds[j] == k:
                j += 1
            out.append(text[i:j])
            i = j
            continue
        j = i + 1
        while j < n and kinds[j] == "s":
            j += 1
        # \s+(?!\S): the run stops one short of a following non-space, unless that leaves nothing.
        end = j if j == n or j - 1 == i else j - 1
        out.append(text[i:end])
        i = end
    return out


def split_special(text, special=EOT):
    """Splits out occurrences of the special token, as the C++ added-token split does."""
    parts, pos = [], 0
    while True:
        at = text.find(special, pos)
        if at < 0:
            break
        if at > pos:
            parts.append(text[pos:at])
        parts.append(special)
        pos = at + len(special)
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def train(word_counts, vocab_size, log=None):
    """Learns merges over byte strings until the vocabulary (256 bytes + merges + EOT) has
    vocab_size entries. Ties on pair count go to the smallest (left, right) byte strings, so the
    result depends only on the counts."""
    words = [[bytes([b]) for b in w] for w in word_counts]
    freq = list(word_counts.values())
    pair_count = Counter()
    where = defaultdict(set)  # pair -> indices of words that contain it
    for wi, syms in enumerate(words):
        for a, b in zip(syms, syms[1:]):
            pair_count[a, b] += freq[wi]
            where[a, b].add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    vocab = {bytes([b]) for b in range(256)}
    merges = []
    while len(vocab) + 1 < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale entry
        a, b = pair
        merged = a + b
        merges.append(pair)
        vocab.add(merged)
        changed = set()
        for wi in sorted(where.pop(pair, ())):
            syms, f = words[wi], freq[wi]
            for x, y in zip(syms, syms[1:]):
                pair_count[x, y] -= f
                changed.add((x, y))
            new, k = [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == a and syms[k + 1] == b:
                    new.append(merged)
                    k += 2
                else:
                    new.append(syms[k])
                    k += 1
            words[wi] = new
            for x, y in zip(new, new[1:]):
                pair_count[x, y] += f
                where[x, y].add(wi)
                changed.add((x, y))
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_count.pop(p, None)
        if log and len(merges) % 500 == 0:
            log(f"bpe: {len(merges)} merges, vocab {len(vocab) + 1}")
    return merges


class Tokenizer:
    """Byte-level BPE: ids 0..255 are the bytes, then one id per new merged piece, then EOT."""

    def __init__(self, merges):
        self.merges = list(merges)
        self.pieces = [bytes([b]) for b in range(256)]
        self.ids = {p: i for i, p in enumerate(self.pieces)}
        self.rank = {}
        for r, (a, b) in enumerate(self.merges):
            self.rank[a, b] = r  # a repeated pair keeps its last rank, like the C++ map
            if a + b not in self.ids:
                self.ids[a + b] = len(self.pieces)
                self.pieces.append(a + b)
        self.eot = len(self.pieces)
        self.cache = {}

    @property
    def vocab_size(self):
        return self.eot + 1

    def _word(self, word):
        """Merges lowest rank first, leftmost on ties (the C++ heap order)."""
        syms = [bytes([b]) for b in word]
        while len(syms) > 1:
            best = None
            for k in range(len(syms) - 1):
                r = self.rank.get((syms[k], syms[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            syms[k:k + 2] = [syms[k] + syms[k + 1]]
        return [self.ids[s] for s in syms]

    def encode(self, text):
        out = []
        for part in split_special(text):
            if part == EOT:
                out.append(self.eot)
                continue
            for w in pretokenize(part):
                ids = self.cache.get(w)
                if ids is None:
                    ids = self._word(w.encode("utf-8"))
                    if len(w) < 256:
                        self.cache[w] = ids
                out.extend(ids)
        return out

    def decode(self, ids):
        out = []
        for i in ids:
            out.append(EOT.encode() if i == self.eot else self.pieces[i])
        return b"".join(out).decode("utf-8", errors="replace")

    def to_json(self):
        """The HF tokenizer.json object (merges as "a b" strings in the byte-level alphabet)."""
        def show(p):
            return "".join(BYTE_CHAR[b] for b in p)
        level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": self.eot, "content": EOT, "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": True}],
            "normalizer": None,
            "pre_tokenizer": level,
            "post_processor": None,
            "decoder": level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {show(p): i for i, p in enumerate(self.pieces)},
                      "merges": [f"{show(a)} {show(b)}" for a, b in self.merges]},
        }

    def config_json(self, max_length):
        """tokenizer_config.json: no BOS added, EOT ends text, no clean-up so decode is exact."""
        return {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
                "add_eos_token": False, "bos_token": EOT, "eos_token": EOT, "unk_token": None,
                "clean_up_tokenization_spaces": False, "model_max_length": max_length}


def count_words(texts):
    """Pre-token frequencies (as UTF-8 bytes) over training texts; EOT never enters BPE."""
    counts = Counter()
    for t in texts:
        for part in split_special(t):
            if part != EOT:
                counts.update(pretokenize(part))
    return Counter({w.encode("utf-8"): c for w, c in counts.items()})
