// Hugging Face `tokenizer.json` tokenizers: byte-level BPE (Qwen, OLMoE, GPT-2, DeepSeek) and
// SentencePiece-style BPE with byte fallback (Llama, Mistral, Mixtral), exact against the
// reference.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xmesh::tokenizer {

struct tokenizer_impl;

/// A loaded tokenizer: immutable after `load`, safe to share between threads for encode/decode.
class tokenizer {
 public:
  /// Loads tokenizer.json (and tokenizer_config.json beside it when present, for bos/eos and
  /// add_bos_token). Throws std::runtime_error with one clear line naming the file and field.
  static tokenizer load(const std::filesystem::path& tokenizer_json);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  /// Turns text into ids; with `add_special` the bos token is prepended when the model adds one.
  [[nodiscard]] std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  /// Turns ids back into text; throws std::runtime_error on unknown ids, invalid UTF-8 becomes
  /// U+FFFD.
  [[nodiscard]] std::string decode(std::span<const int32_t> ids) const;

  /// The beginning-of-sequence token, when the model has one.
  [[nodiscard]] std::optional<int32_t> bos_id() const;
  /// The end-of-sequence token, when the model has one.
  [[nodiscard]] std::optional<int32_t> eos_id() const;
  /// The model's own bos setting (add_bos_token), used by `xmesh generate --prompt`.
  [[nodiscard]] bool add_bos() const;
  /// Highest id + 1, added tokens included.
  [[nodiscard]] size_t vocab_size() const;

 private:
  explicit tokenizer(std::unique_ptr<tokenizer_impl> impl);
  std::unique_ptr<tokenizer_impl> impl_;
};

/// Writes a small but real byte-level BPE tokenizer.json (+ tokenizer_config.json) into `dir` with
/// exactly `vocab_size` ids (256 byte tokens, merges learned deterministically from a built-in
/// English text, and <|endoftext|> as bos/eos). Requires vocab_size >= 300.
void write_demo_tokenizer(const std::filesystem::path& dir, int32_t vocab_size);

}  // namespace xmesh::tokenizer
