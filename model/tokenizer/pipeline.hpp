// The configurable stages around the BPE model, built from tokenizer.json: normalizers,
// pre-tokenizers, post-processor template and decoders, each as the reference applies them.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace xmesh::tokenizer {

/// Thrown while reading tokenizer.json; the loader prefixes the file name.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class regex;

/// The regex of a component's "pattern": {"String": literal} or {"Regex": pattern}.
regex make_pattern(const nlohmann::json& j, const std::string& where);

/// One text -> text normalization step (NFC, Prepend, Replace, ...).
class normalizer {
 public:
  virtual ~normalizer() = default;
  [[nodiscard]] virtual std::string apply(std::string text) const = 0;
};

/// Builds the normalizer of a `normalizer` JSON value; nullptr for null.
std::unique_ptr<normalizer> make_normalizer(const nlohmann::json& j);

/// One step that splits pieces of a section into smaller pieces.
class pre_tokenizer {
 public:
  virtual ~pre_tokenizer() = default;
  /// Splits every piece in `pieces`; `section` is the index of the text section (Metaspace).
  virtual void apply(std::vector<std::string>& pieces, size_t section) const = 0;
  /// True when the step maps text to the byte-level alphabet (BPE then works on raw bytes).
  [[nodiscard]] virtual bool byte_level() const { return false; }
};

/// Builds the pre-tokenizer of a `pre_tokenizer` JSON value; nullptr for null.
std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const nlohmann::json& j);

/// One decoding step over the list of token strings.
class decoder {
 public:
  virtual ~decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

/// What decoders need to know about the vocabulary.
struct decoder_context {
  std::unordered_set<std::string> added_contents;  ///< added tokens pass ByteLevel untouched
};

/// Builds the decoder of a `decoder` JSON value; nullptr for null.
std::unique_ptr<decoder> make_decoder(const nlohmann::json& j,
                                      std::shared_ptr<const decoder_context> ctx);

/// The special-token strings the post-processor adds around a single sequence.
struct post_template {
  bool present = false;             ///< a TemplateProcessing (or Bert/Roberta) processor exists
  std::vector<std::string> prefix;  ///< added before the sequence
  std::vector<std::string> suffix;  ///< added after it
};

/// Reads the `post_processor` JSON value.
post_template make_post_template(const nlohmann::json& j);

}  // namespace xmesh::tokenizer
