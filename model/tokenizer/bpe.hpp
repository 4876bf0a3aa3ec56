// The BPE model: merges applied by rank (lowest first, leftmost on ties), byte fallback, unk.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace xmesh::tokenizer {

/// Options of a BPE model, from tokenizer.json's "model" object.
struct bpe_options {
  bool byte_units = false;     ///< words are raw bytes (byte-level BPE), else UTF-8 code points
  bool byte_fallback = false;  ///< unknown pieces become <0xNN> tokens
  bool ignore_merges = false;  ///< a word found whole in the vocab is emitted as is
  std::optional<int32_t> unk_id;
};

/// Transparent string hashing so maps can be searched with string_view.
struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

/// A string -> id map searchable with string_view.
using token_map = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

/// Byte-pair encoding over a vocabulary and a ranked merge list; thread-safe after construction.
class bpe_model {
 public:
  /// `vocab` maps piece (in unit space: raw bytes when byte_units) to id; `merges` in rank order.
  bpe_model(token_map vocab, const std::vector<std::pair<std::string, std::string>>& merges,
            bpe_options options);

  /// Appends the ids of one pre-tokenized word to `out`.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  /// The id of a whole piece, if it is in the vocabulary.
  [[nodiscard]] std::optional<int32_t> find(std::string_view piece) const;
  [[nodiscard]] const bpe_options& options() const { return options_; }

 private:
  struct merge_target {
    int32_t rank;
    int32_t merged;
  };
  struct symbol {
    int32_t sym;
    uint32_t start, len;
    int32_t prev, next;
  };

  int32_t intern(const std::string& piece);
  void merge_symbols(std::vector<symbol>& syms) const;
  void emit(std::string_view word, const std::vector<symbol>& syms,
            std::vector<int32_t>& out) const;
  void emit_unknown(std::string_view piece, std::vector<int32_t>& out) const;

  bpe_options options_;
  token_map vocab_;                    // piece -> token id
  token_map symbols_;                  // piece -> symbol index (vocab pieces and merge parts)
  std::vector<int32_t> symbol_token_;  // symbol index -> token id, or -1
  std::unordered_map<uint64_t, merge_target> merges_;
  std::vector<int32_t> byte_symbol_;       // byte -> symbol index (byte units)
  std::vector<int32_t> byte_fallback_id_;  // byte -> id of <0xNN>, or -1

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, string_hash, std::equal_to<>>
      cache_;
};

}  // namespace xmesh::tokenizer
