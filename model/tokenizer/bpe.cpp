// BPE merge loop: a min-heap of (rank, position) over a linked list of symbols, lazily
// invalidated; results of short words are cached.
#include "model/tokenizer/bpe.hpp"

#include <algorithm>
#include <cstdio>
#include <queue>

namespace xmesh::tokenizer {

namespace {

constexpr size_t max_cached_word = 256;
constexpr size_t max_cache_entries = 1 << 18;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

size_t unit_length(std::string_view s, size_t i, bool byte_units) {
  if (byte_units) return 1;
  auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  return std::min(n, s.size() - i);
}

}  // namespace

bpe_model::bpe_model(token_map vocab,
                     const std::vector<std::pair<std::string, std::string>>& merges,
                     bpe_options options)
    : options_(options), vocab_(std::move(vocab)) {
  for (const auto& [piece, id] : vocab_) intern(piece);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    int32_t left = intern(a), right = intern(b), merged = intern(a + b);
    // A repeated pair keeps its last rank, like the reference's Map construction.
    merges_[pair_key(left, right)] = {static_cast<int32_t>(rank), merged};
  }
  byte_symbol_.assign(256, -1);
  byte_fallback_id_.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    std::string unit(1, static_cast<char>(b));
    if (auto it = symbols_.find(unit); it != symbols_.end()) byte_symbol_[b] = it->second;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (auto it = vocab_.find(std::string_view(name)); it != vocab_.end())
      byte_fallback_id_[b] = it->second;
  }
}

int32_t bpe_model::intern(const std::string& piece) {
  auto [it, inserted] = symbols_.try_emplace(piece, static_cast<int32_t>(symbol_token_.size()));
  if (inserted) {
    auto v = vocab_.find(piece);
    symbol_token_.push_back(v == vocab_.end() ? -1 : v->second);
  }
  return it->second;
}

std::optional<int32_t> bpe_model::find(std::string_view piece) const {
  auto it = vocab_.find(piece);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void bpe_model::merge_symbols(std::vector<symbol>& syms) const {
  struct candidate {
    int32_t rank;
    uint32_t start;
    int32_t left, right, left_sym, right_sym, merged;
    bool operator>(const candidate& o) const {
      return rank != o.rank ? rank > o.rank : start > o.start;
    }
  };
  std::priority_queue<candidate, std::vector<candidate>, std::greater<>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0 || syms[left].next < 0) return;
    const symbol& l = syms[left];
    const symbol& r = syms[l.next];
    if (l.sym < 0 || r.sym < 0) return;
    auto it = merges_.find(pair_key(l.sym, r.sym));
    if (it == merges_.end()) return;
    heap.push({it->second.rank, l.start, left, l.next, l.sym, r.sym, it->second.merged});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    candidate c = heap.top();
    heap.pop();
    symbol& l = syms[c.left];
    if (l.len == 0 || l.next != c.right || l.sym != c.left_sym) continue;
    symbol& r = syms[c.right];
    if (r.len == 0 || r.sym != c.right_sym) continue;
    l.sym = c.merged;
    l.len += r.len;
    l.next = r.next;
    r.len = 0;
    if (l.next >= 0) syms[l.next].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }
}

void bpe_model::emit_unknown(std::string_view piece, std::vector<int32_t>& out) const {
  if (options_.byte_fallback) {
    bool all = true;
    for (char ch : piece) all &= byte_fallback_id_[static_cast<unsigned char>(ch)] >= 0;
    if (all) {
      for (char ch : piece) out.push_back(byte_fallback_id_[static_cast<unsigned char>(ch)]);
      return;
    }
  }
  if (options_.unk_id) out.push_back(*options_.unk_id);
}

void bpe_model::emit(std::string_view word, const std::vector<symbol>& syms,
                     std::vector<int32_t>& out) const {
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const symbol& s = syms[i];
    int32_t id = s.sym >= 0 ? symbol_token_[s.sym] : -1;
    if (id >= 0) {
      out.push_back(id);
    } else {
      emit_unknown(word.substr(s.start, s.len), out);
    }
  }
}

void bpe_model::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = word.size() < max_cached_word;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<symbol> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    size_t n = unit_length(word, i, options_.byte_units);
    int32_t sym = -1;
    if (options_.byte_units) {
      sym = byte_symbol_[static_cast<unsigned char>(word[i])];
    } else if (auto it = symbols_.find(word.substr(i, n)); it != symbols_.end()) {
      sym = it->second;
    }
    auto idx = static_cast<int32_t>(syms.size());
    syms.push_back({sym, static_cast<uint32_t>(i), static_cast<uint32_t>(n), idx - 1, -1});
    if (idx > 0) syms[idx - 1].next = idx;
    i += n;
  }
  merge_symbols(syms);
  size_t first = out.size();
  emit(word, syms, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= max_cache_entries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

}  // namespace xmesh::tokenizer
