// The state behind `tokenizer`: the pipeline stages, the added tokens and the id tables.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "model/tokenizer/bpe.hpp"
#include "model/tokenizer/pipeline.hpp"
#include "model/tokenizer/tokenizer.hpp"

namespace xmesh::tokenizer {

/// An added token (special or not), matched in raw text before normalization.
struct added_token {
  std::string content;
  int32_t id = 0;
  bool lstrip = false;
  bool rstrip = false;
  bool special = false;
};

struct tokenizer_impl {
  std::unique_ptr<normalizer> norm;
  std::unique_ptr<pre_tokenizer> pre;
  std::unique_ptr<bpe_model> model;
  std::unique_ptr<decoder> dec;
  post_template post;

  std::vector<added_token> added;
  std::array<std::vector<int32_t>, 256> added_by_byte;  // indices into `added`, longest first
  token_map added_ids;                                  // content -> id

  std::vector<std::string> id_to_token;  // model-space token strings (added tokens override)
  std::vector<bool> id_known;
  token_map token_ids;  // model-space string -> id, vocab then added

  std::optional<int32_t> bos, eos, unk;
  bool add_bos = false;
  bool fuse_unk = false;
  bool clean_up_spaces = true;
  bool llama_non_legacy = false;     // LlamaTokenizer with legacy=false in tokenizer_config
  std::optional<int32_t> spiece_id;  // id of "▁" (non-legacy Llama)
  std::unordered_set<int32_t> special_ids;

  /// Splits raw text into sections: added tokens and the text between them.
  [[nodiscard]] std::vector<std::string> split_added(std::string_view text) const;
  /// Normalizes, pre-tokenizes and BPE-encodes one plain-text section.
  void encode_section(std::string text, size_t index, std::vector<int32_t>& out) const;
  /// The id of a model-space token string, if any.
  [[nodiscard]] std::optional<int32_t> id_of(const std::string& token) const;
};

/// Builds the state from parsed tokenizer.json and (possibly empty) tokenizer_config.json.
std::unique_ptr<tokenizer_impl> build_tokenizer(const nlohmann::json& tok,
                                                const nlohmann::json& config);

}  // namespace xmesh::tokenizer
