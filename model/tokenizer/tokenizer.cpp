// tokenizer: loading files, the encode pipeline (added tokens, normalizer, pre-tokenizer, BPE,
// post-processor) and the decode chain.
#include "model/tokenizer/tokenizer.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "model/tokenizer/tokenizer_impl.hpp"
#include "model/tokenizer/unicode.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json_file(const std::filesystem::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path.string() + ": malformed JSON: " + e.what());
  }
}

// The reference's clean_up_tokenization (English spacing artifacts).
std::string clean_up(std::string s) {
  static const std::pair<const char*, const char*> rules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : rules) {
    std::string out;
    std::string_view f(from);
    size_t prev = 0;
    for (size_t at = s.find(f); at != std::string::npos; at = s.find(f, prev)) {
      out.append(s, prev, at - prev).append(to);
      prev = at + f.size();
    }
    s = out.append(s, prev);
  }
  return s;
}

}  // namespace

std::optional<int32_t> tokenizer_impl::id_of(const std::string& token) const {
  auto it = token_ids.find(token);
  if (it == token_ids.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> tokenizer_impl::split_added(std::string_view text) const {
  std::vector<std::string> sections;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const added_token* match = nullptr;
    for (int32_t k : added_by_byte[static_cast<unsigned char>(text[i])]) {
      if (text.substr(i).starts_with(added[k].content)) {
        match = &added[k];  // longest first
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > start) sections.emplace_back(text.substr(start, i - start));
    sections.push_back(match->content);
    i += match->content.size();
    start = i;
  }
  if (start < text.size()) sections.emplace_back(text.substr(start));
  // Added tokens with lstrip/rstrip eat the white space beside them.
  for (size_t i = 0; i < sections.size(); ++i) {
    auto it = added_ids.find(sections[i]);
    if (it == added_ids.end()) continue;
    for (const auto& a : added) {
      if (a.content != sections[i]) continue;
      if (a.lstrip && i > 0) sections[i - 1] = std::string(js_trim(sections[i - 1], false, true));
      if (a.rstrip && i + 1 < sections.size())
        sections[i + 1] = std::string(js_trim(sections[i + 1], true, false));
      break;
    }
  }
  return sections;
}

void tokenizer_impl::encode_section(std::string text, size_t index,
                                    std::vector<int32_t>& out) const {
  if (norm) text = norm->apply(std::move(text));
  if (text.empty()) return;
  std::vector<std::string> pieces;
  pieces.push_back(std::move(text));
  if (pre) pre->apply(pieces, index);
  size_t first = out.size();
  for (const auto& p : pieces) model->encode_word(p, out);
  if (fuse_unk && unk) {  // consecutive unknowns become one
    size_t w = first;
    for (size_t r = first; r < out.size(); ++r)
      if (!(out[r] == *unk && w > first && out[w - 1] == *unk)) out[w++] = out[r];
    out.resize(w);
  }
}

tokenizer::tokenizer(std::unique_ptr<tokenizer_impl> impl) : impl_(std::move(impl)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

tokenizer tokenizer::load(const std::filesystem::path& tokenizer_json) {
  json tok = parse_json_file(tokenizer_json);
  json config = json::object();
  auto config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) config = parse_json_file(config_path);
  if (!config.is_object())
    throw std::runtime_error(config_path.string() + ": expected a JSON object");
  try {
    return tokenizer(build_tokenizer(tok, config));
  } catch (const std::exception& e) {
    throw std::runtime_error(tokenizer_json.string() + ": " + e.what());
  }
}

std::vector<int32_t> tokenizer::encode(std::string_view input, bool add_special) const {
  const tokenizer_impl& t = *impl_;
  std::string text = is_valid_utf8(input) ? std::string(input) : decode_utf8_lossy(input);
  if (t.llama_non_legacy && !text.empty()) {
    std::string swapped;
    for (size_t at = 0, prev = 0;; prev = at + 3) {
      at = text.find("\u2581", prev);
      swapped.append(text, prev, at == std::string::npos ? std::string::npos : at - prev);
      if (at == std::string::npos) break;
      swapped += ' ';
    }
    text = "\u2581" + swapped;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  auto sections = t.split_added(text);
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].empty()) continue;
    if (auto it = t.added_ids.find(sections[i]); it != t.added_ids.end()) {
      ids.push_back(it->second);
    } else {
      t.encode_section(std::move(sections[i]), i, ids);
    }
  }
  if (t.llama_non_legacy && ids.size() > 1 && t.spiece_id && ids[0] == *t.spiece_id &&
      t.special_ids.count(ids[1]) != 0)
    ids.erase(ids.begin());
  if (!add_special) return ids;
  std::vector<int32_t> out;
  if (t.post.present) {
    for (const auto& s : t.post.prefix)
      if (auto id = t.id_of(s)) out.push_back(*id);
    out.insert(out.end(), ids.begin(), ids.end());
    for (const auto& s : t.post.suffix)
      if (auto id = t.id_of(s)) out.push_back(*id);
    return out;
  }
  if (t.add_bos && t.bos) out.push_back(*t.bos);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string tokenizer::decode(std::span<const int32_t> ids) const {
  const tokenizer_impl& t = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.id_to_token.size() || !t.id_known[id])
      throw std::runtime_error("decode: unknown token id " + std::to_string(id) +
                               " (vocabulary has " + std::to_string(t.id_to_token.size()) +
                               " ids)");
    tokens.push_back(t.id_to_token[id]);
  }
  std::string text;
  if (t.dec) {
    t.dec->apply(tokens);
    for (const auto& s : tokens) text += s;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) text.append(i ? " " : "").append(tokens[i]);
  }
  return t.clean_up_spaces ? clean_up(std::move(text)) : text;
}

std::optional<int32_t> tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> tokenizer::eos_id() const { return impl_->eos; }
bool tokenizer::add_bos() const { return impl_->add_bos; }
size_t tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

}  // namespace xmesh::tokenizer
