// Writes the demo byte-level BPE tokenizer used by synthetic models: merges are learned
// deterministically from a built-in English text, so every run writes the same files.
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "model/tokenizer/regex.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "model/tokenizer/unicode.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;

constexpr const char* split_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* eos_text = "<|endoftext|>";

constexpr const char* training_text =
    "ExpertMesh serves mixture of experts language models whose experts are spread over many "
    "nodes. A request enters a head node, which runs the dense part of the model: embeddings, "
    "attention with its cache, the norms, the gates and the language model head. For every "
    "layer of experts a router scores the experts for each token, picks the best few, and sends "
    "the hidden states of the tokens to the nodes that host the chosen experts. The experts run "
    "their feed forward networks on the batch and send the outputs back, and the router combines "
    "them with the weights of the gate. The coordinator keeps the placement table, watches the "
    "load, the latency, the memory and the health of every node, and it replicates, migrates and "
    "places experts again while requests keep flowing. The quick brown fox jumps over the lazy "
    "dog. She sells sea shells by the sea shore. It was the best of times, it was the worst of "
    "times, it was the age of wisdom, it was the age of foolishness. In the beginning there was "
    "the word, and the word was tokenized. Hello world! How are you today? I'm fine, thanks, and "
    "you? We'll see what they've done and what you'd like to do next. Numbers like 1, 2, 3, 10, "
    "42, 100 and 2024 appear in text, as do prices such as $5.99 and times such as 12:30. "
    "Training a model takes data, compute and patience; serving it takes careful engineering. "
    "The cat sat on the mat. The dog ran in the park. The sun rises in the east and sets in the "
    "west. Water flows down the hill to the river, and the river flows to the sea.\n"
    "def main():\n    print(\"hello, world\")\n    return 0\n";

using word = std::vector<std::string>;

// Counts of every adjacent pair over all words, weighted by word frequency (ordered: ties
// resolve to the lexicographically smallest pair, which keeps training deterministic).
std::map<std::pair<std::string, std::string>, int> count_pairs(
    const std::map<std::string, int>& freq, const std::map<std::string, word>& split) {
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto& [w, n] : freq) {
    const word& s = split.at(w);
    for (size_t i = 0; i + 1 < s.size(); ++i) counts[{s[i], s[i + 1]}] += n;
  }
  return counts;
}

void apply_merge(word& s, const std::string& a, const std::string& b) {
  word out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
      out.push_back(a + b);
      ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  s = std::move(out);
}

std::string to_alphabet(const std::string& bytes) {
  std::string out;
  for (char c : bytes) append_utf8(out, byte_to_unicode()[static_cast<unsigned char>(c)]);
  return out;
}

// Learns merges until `max_ids` ids exist or no pair occurs twice; fills `vocab` and `merges`.
void learn(int32_t max_ids, json& vocab, json& merges) {
  std::map<std::string, int> freq;
  std::string text = training_text;
  for (auto [b, e] : regex(split_pattern).find_all(text)) ++freq[text.substr(b, e - b)];
  std::map<std::string, word> split;
  for (const auto& [w, n] : freq)
    for (char c : w) split[w].push_back(std::string(1, c));
  std::set<std::string> known;
  int32_t next = 0;
  for (int b = 0; b < 256; ++b) {
    std::string s(1, static_cast<char>(b));
    vocab[to_alphabet(s)] = next++;
    known.insert(s);
  }
  while (next < max_ids) {
    auto counts = count_pairs(freq, split);
    auto best = counts.end();
    for (auto it = counts.begin(); it != counts.end(); ++it)
      if (best == counts.end() || it->second > best->second) best = it;
    if (best == counts.end() || best->second < 2) break;
    auto [a, b] = best->first;
    merges.push_back(json::array({to_alphabet(a), to_alphabet(b)}));
    if (known.insert(a + b).second) vocab[to_alphabet(a + b)] = next++;
    for (auto& [w, s] : split) apply_merge(s, a, b);
  }
}

json added_token(const std::string& content, int32_t id) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

void write_json(const std::filesystem::path& path, const json& j) {
  std::ofstream out(path, std::ios::binary);
  out << j.dump(1) << "\n";
  if (!out) throw std::runtime_error(path.string() + ": cannot write");
}

}  // namespace

void write_demo_tokenizer(const std::filesystem::path& dir, int32_t vocab_size) {
  if (vocab_size < 300)
    throw std::runtime_error("demo tokenizer: vocab_size must be >= 300, got " +
                             std::to_string(vocab_size));
  json vocab = json::object(), merges = json::array();
  learn(vocab_size - 1, vocab, merges);
  auto next = static_cast<int32_t>(vocab.size());
  json added = json::array({added_token(eos_text, next++)});
  for (int32_t k = 0; next < vocab_size; ++k)  // the text ran out of pairs: reserved ids
    added.push_back(added_token("<|reserved_" + std::to_string(k) + "|>", next++));
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", false},
                     {"use_regex", false}};
  json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"},
                                        {"pattern", {{"Regex", split_pattern}}},
                                        {"behavior", "Isolated"},
                                        {"invert", false}},
                                       byte_level})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", eos_text}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array({{{"SpecialToken", {{"id", eos_text}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens",
         {{eos_text, {{"id", eos_text}, {"ids", {added[0]["id"]}}, {"tokens", {eos_text}}}}}}}},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}}};
  json config = {{"add_bos_token", true},       {"bos_token", eos_text},
                 {"eos_token", eos_text},       {"clean_up_tokenization_spaces", false},
                 {"model_max_length", 1 << 20}, {"tokenizer_class", "PreTrainedTokenizerFast"}};
  std::filesystem::create_directories(dir);
  write_json(dir / "tokenizer.json", tok);
  write_json(dir / "tokenizer_config.json", config);
}

}  // namespace xmesh::tokenizer
