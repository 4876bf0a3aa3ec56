// UTF-8 helpers with the reference's (WHATWG TextDecoder, ECMAScript) semantics, the GPT-2 byte
// alphabet, and NFC normalization through ICU.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace xmesh::tokenizer {

/// Appends the UTF-8 encoding of code point `cp` to `out`.
void append_utf8(std::string& out, char32_t cp);

/// Decodes the code point at `s[i]` of valid UTF-8 and advances `i` past it.
char32_t next_code_point(std::string_view s, size_t& i);

/// Decodes bytes as the WHATWG TextDecoder does: each maximal invalid subpart becomes U+FFFD.
/// With `strip_bom` a leading U+FEFF is dropped (TextDecoder's default, ignoreBOM=false).
std::string decode_utf8_lossy(std::string_view bytes, bool strip_bom = false);

/// True when `s` is well-formed UTF-8 (no surrogates, no overlongs).
bool is_valid_utf8(std::string_view s);
/// Offset of the first byte where `s` stops being well-formed UTF-8; npos when it is valid.
size_t invalid_utf8_at(std::string_view s);

/// ECMAScript white space and line terminators (what `\s` and String.prototype.trim use).
bool is_js_space(char32_t cp);

/// Removes leading (`front`) or trailing JS white space from `s`.
std::string_view js_trim(std::string_view s, bool front, bool back);

/// The GPT-2 byte-level alphabet: byte -> code point, and the inverse (-1 when not in it).
const std::array<char32_t, 256>& byte_to_unicode();
int byte_from_unicode(char32_t cp);

/// NFC-normalizes valid UTF-8 text (ASCII passes through untouched).
std::string nfc_normalize(std::string_view text);

}  // namespace xmesh::tokenizer
