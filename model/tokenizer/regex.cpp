// PCRE2 wrapper: UTF mode, JIT, ECMAScript semantics for white space, `.` and `$`.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer/regex.hpp"

#include <pcre2.h>

#include <stdexcept>

namespace xmesh::tokenizer {

namespace {

// ECMAScript white space and line terminators, as PCRE2 class items.
constexpr const char* js_space_items =
    "\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}\\x{FEFF}";

// The reference replaces this Python-only group by an explicit ASCII one (no Unicode folding).
constexpr std::string_view ci_contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
constexpr std::string_view ci_contractions_js =
    "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

std::string replace_every(std::string s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// Translates one escape `\c...` starting at p[i] == '\\'; returns the characters consumed.
size_t translate_escape(const std::string& p, size_t i, bool in_class, std::string& out) {
  if (i + 1 >= p.size()) {
    out += '\\';
    return 1;
  }
  char c = p[i + 1];
  std::string ws(js_space_items);
  if (c == 's') {
    out += in_class ? ws : "[" + ws + "]";
    return 2;
  }
  if (c == 'S' && !in_class) {
    out += "[^" + ws + "]";
    return 2;
  }
  if (c == 'u' && i + 2 < p.size() && p[i + 2] == '{') {
    size_t close = p.find('}', i + 3);
    if (close != std::string::npos) {
      out += "\\x{" + p.substr(i + 3, close - i - 3) + "}";
      return close - i + 1;
    }
  }
  if (c == 'u' && i + 6 <= p.size() &&
      p.substr(i + 2, 4).find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
    out += "\\x{" + p.substr(i + 2, 4) + "}";
    return 6;
  }
  out += p.substr(i, 2);
  return 2;
}

}  // namespace

std::string translate_js_pattern(const std::string& pattern) {
  std::string p = replace_every(pattern, ci_contractions, ci_contractions_js);
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size();) {
    char c = p[i];
    if (c == '\\') {
      i += translate_escape(p, i, in_class, out);
      continue;
    }
    if (c == '[' && !in_class)
      in_class = true;
    else if (c == ']' && in_class)
      in_class = false;
    if (c == '.' && !in_class) {
      out += "[^\\n\\r\\x{2028}\\x{2029}]";
    } else {
      out += c;
    }
    ++i;
  }
  return out;
}

struct regex::impl {
  pcre2_code* code = nullptr;
  ~impl() { pcre2_code_free(code); }
};

regex::regex(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
regex::regex(regex&&) noexcept = default;
regex& regex::operator=(regex&&) noexcept = default;
regex::~regex() = default;

static std::unique_ptr<regex::impl> compile(const std::string& pcre_pattern, uint32_t extra,
                                            const std::string& shown) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  auto p = std::make_unique<regex::impl>();
  p->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre_pattern.data()), pcre_pattern.size(),
                          PCRE2_UTF | PCRE2_NO_UTF_CHECK |
                              ((extra & PCRE2_LITERAL) ? extra : extra | PCRE2_DOLLAR_ENDONLY),
                          &err, &offset, nullptr);
  if (p->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw std::runtime_error("bad regex '" + shown + "' at offset " + std::to_string(offset) +
                             ": " + reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  return p;
}

regex::regex(const std::string& js_pattern)
    : impl_(compile(translate_js_pattern(js_pattern), 0, js_pattern)) {}

regex regex::literal(std::string_view text) {
  return regex(compile(std::string(text), PCRE2_LITERAL, std::string(text)));
}

std::vector<std::pair<size_t, size_t>> regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    int rc = pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    out.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      start = ov[1];
      continue;
    }
    // Empty match: like lastIndex in `u` mode, step over one code point.
    start = ov[1] + 1;
    while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
  }
  pcre2_match_data_free(md);
  return out;
}

std::string regex::replace_all(std::string_view text, std::string_view content) const {
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : find_all(text)) {
    out.append(text.substr(prev, b - prev));
    out.append(content);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace xmesh::tokenizer
