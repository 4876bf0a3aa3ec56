// PCRE2 (JIT, UTF) regexes that behave like the reference's ECMAScript `u` regexes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xmesh::tokenizer {

/// A compiled pattern; thread-safe to use concurrently.
class regex {
 public:
  /// Compiles an ECMAScript-flavoured pattern (as tokenizer.json stores it); throws on errors.
  explicit regex(const std::string& js_pattern);
  /// Compiles a literal string.
  static regex literal(std::string_view text);
  regex(regex&&) noexcept;
  regex& operator=(regex&&) noexcept;
  ~regex();

  /// Every match as [begin, end) byte offsets, scanning like String.prototype.matchAll
  /// (an empty match advances by one code point). `text` must be valid UTF-8.
  [[nodiscard]] std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  /// Replaces every match by `content`, taken literally.
  [[nodiscard]] std::string replace_all(std::string_view text, std::string_view content) const;

  /// The compiled PCRE2 code (defined in regex.cpp).
  struct impl;

 private:
  explicit regex(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Rewrites an ECMAScript pattern for PCRE2: JS `\s` white space, `.`, `\uXXXX`, and the
/// reference's rewrite of `(?i:'s|'t|...)`.
std::string translate_js_pattern(const std::string& pattern);

}  // namespace xmesh::tokenizer
