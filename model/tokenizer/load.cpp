// Builds a tokenizer from tokenizer.json + tokenizer_config.json values.
#include <algorithm>

#include "model/tokenizer/json_util.hpp"
#include "model/tokenizer/tokenizer_impl.hpp"
#include "model/tokenizer/unicode.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;
using merge_list = std::vector<std::pair<std::string, std::string>>;

// Byte-level alphabet text -> raw bytes; nullopt when a character is outside the alphabet.
std::optional<std::string> to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int b = byte_from_unicode(next_code_point(s, i));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

merge_list read_merges(const json& model) {
  merge_list merges;
  auto it = model.find("merges");
  if (it == model.end() || !it->is_array()) throw config_error("model.merges: expected a list");
  merges.reserve(it->size());
  for (const auto& m : *it) {
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ', 0);  // like split(" ", 2): the first space separates
      if (space == std::string::npos)
        throw config_error("model.merges: entry '" + s + "' has no space");
      size_t end = s.find(' ', space + 1);
      merges.emplace_back(s.substr(0, space), s.substr(space + 1, end - space - 1));
    } else {
      throw config_error("model.merges: expected \"a b\" strings or [a, b] pairs");
    }
  }
  return merges;
}

std::optional<std::string> config_token(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw config_error(std::string(key) + ": expected a string or an AddedToken object");
}

void read_vocab(const json& model, tokenizer_impl& t) {
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object())
    throw config_error("model.vocab: expected an object");
  for (const auto& [piece, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw config_error("model.vocab: id of '" + piece + "' is not a non-negative integer");
    t.token_ids[piece] = id.get<int32_t>();
  }
}

void read_added(const json& tok, tokenizer_impl& t) {
  for (const auto& a : tok.value("added_tokens", json::array())) {
    added_token at;
    at.content = json_string(a, "content", "added_tokens[]");
    if (!a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0)
      throw config_error("added_tokens[].id: expected a non-negative integer for '" + at.content +
                         "'");
    at.id = a["id"].get<int32_t>();
    at.lstrip = json_bool(a, "lstrip", false);
    at.rstrip = json_bool(a, "rstrip", false);
    at.special = json_bool(a, "special", false);
    t.token_ids[at.content] = at.id;
    t.added_ids[at.content] = at.id;
    if (!at.content.empty()) t.added.push_back(at);
  }
  for (size_t i = 0; i < t.added.size(); ++i)
    t.added_by_byte[static_cast<unsigned char>(t.added[i].content[0])].push_back(
        static_cast<int32_t>(i));
  for (auto& list : t.added_by_byte)
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return t.added[a].content.size() > t.added[b].content.size();
    });
}

void build_id_table(tokenizer_impl& t) {
  int32_t top = -1;
  for (const auto& [piece, id] : t.token_ids) top = std::max(top, id);
  t.id_to_token.assign(static_cast<size_t>(top + 1), std::string());
  t.id_known.assign(static_cast<size_t>(top + 1), false);
  for (const auto& [piece, id] : t.token_ids) {
    if (!t.id_known[id] || t.added_ids.count(piece) != 0) t.id_to_token[id] = piece;
    t.id_known[id] = true;
  }
  for (const auto& a : t.added) t.id_to_token[a.id] = a.content;  // added tokens win
}

// The BPE vocabulary in unit space: raw bytes for byte-level models.
std::unique_ptr<bpe_model> build_model(const json& model, tokenizer_impl& t, bool byte_units) {
  bpe_options opt;
  opt.byte_units = byte_units;
  opt.byte_fallback = json_bool(model, "byte_fallback", false);
  opt.ignore_merges = json_bool(model, "ignore_merges", false);
  opt.unk_id = t.unk;
  merge_list merges = read_merges(model);
  if (!byte_units) return std::make_unique<bpe_model>(t.token_ids, merges, opt);
  token_map units;
  for (const auto& [piece, id] : t.token_ids)
    if (auto b = to_bytes(piece)) units[*b] = id;
  for (const auto& a : t.added)  // an added token overrides a vocab piece with the same text
    if (auto b = to_bytes(a.content)) units[*b] = a.id;
  merge_list byte_merges;
  byte_merges.reserve(merges.size());
  for (const auto& [a, b] : merges) {
    auto ba = to_bytes(a), bb = to_bytes(b);
    if (ba && bb) byte_merges.emplace_back(std::move(*ba), std::move(*bb));
  }
  return std::make_unique<bpe_model>(std::move(units), byte_merges, opt);
}

void read_config(const json& config, tokenizer_impl& t) {
  if (auto b = config_token(config, "bos_token")) t.bos = t.id_of(*b);
  if (auto e = config_token(config, "eos_token")) t.eos = t.id_of(*e);
  t.add_bos = json_bool(config, "add_bos_token", !t.post.prefix.empty());
  if (!t.bos && !t.post.prefix.empty()) t.bos = t.id_of(t.post.prefix.front());
  t.clean_up_spaces = json_bool(config, "clean_up_tokenization_spaces", true);
  std::string cls = config.value("tokenizer_class", std::string());
  if (cls.ends_with("Fast")) cls.resize(cls.size() - 4);
  t.llama_non_legacy = cls == "LlamaTokenizer" && !json_bool(config, "legacy", true);
  for (const auto& a : t.added)
    if (a.special) t.special_ids.insert(a.id);
  for (const auto& s : config.value("additional_special_tokens", json::array()))
    if (s.is_string())
      if (auto id = t.id_of(s.get<std::string>())) t.special_ids.insert(*id);
}

}  // namespace

std::unique_ptr<tokenizer_impl> build_tokenizer(const json& tok, const json& config) {
  if (!tok.is_object()) throw config_error("top level: expected a JSON object");
  auto t = std::make_unique<tokenizer_impl>();
  const json& model = tok.contains("model") ? tok["model"] : throw config_error("model: missing");
  std::string type = model.value("type", std::string(model.contains("merges") ? "BPE" : ""));
  if (type != "BPE")
    throw config_error("model.type: unsupported model type '" + type + "' (supported: BPE)");
  if (!model.value("end_of_word_suffix", json()).is_null() &&
      !model["end_of_word_suffix"].get<std::string>().empty())
    throw config_error("model.end_of_word_suffix: not supported");
  read_vocab(model, *t);
  read_added(tok, *t);
  build_id_table(*t);
  if (auto unk = model.find("unk_token"); unk != model.end() && unk->is_string())
    t->unk = t->id_of(unk->get<std::string>());
  t->fuse_unk = json_bool(model, "fuse_unk", false);
  t->norm = make_normalizer(tok.value("normalizer", json()));
  t->pre = make_pre_tokenizer(tok.value("pre_tokenizer", json()));
  t->model = build_model(model, *t, t->pre && t->pre->byte_level());
  auto ctx = std::make_shared<decoder_context>();
  for (const auto& a : t->added) ctx->added_contents.insert(a.content);
  t->dec = make_decoder(tok.value("decoder", json()), ctx);
  t->post = make_post_template(tok.value("post_processor", json()));
  read_config(config, *t);
  if (t->llama_non_legacy) {
    t->norm = nullptr;
    t->pre = make_pre_tokenizer(json{{"type", "Metaspace"},
                                     {"replacement", "\u2581"},
                                     {"add_prefix_space", true},
                                     {"prepend_scheme", "first"}});
    t->spiece_id = t->id_of("\u2581");
  }
  return t;
}

}  // namespace xmesh::tokenizer
