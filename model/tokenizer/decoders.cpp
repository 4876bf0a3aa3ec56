// Decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, Sequence) and
// the post-processor template, mirroring the reference's decode chain.
#include "model/tokenizer/json_util.hpp"
#include "model/tokenizer/pipeline.hpp"
#include "model/tokenizer/regex.hpp"
#include "model/tokenizer/unicode.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;

// Maps byte-level characters back to bytes (characters outside the alphabet give 0, as the
// reference's Uint8Array does with undefined) and decodes the bytes as TextDecoder does.
std::string byte_level_text(const std::vector<std::string>& run) {
  std::string bytes;
  for (const auto& tok : run) {
    for (size_t i = 0; i < tok.size();) {
      int b = byte_from_unicode(next_code_point(tok, i));
      bytes.push_back(static_cast<char>(b < 0 ? 0 : b));
    }
  }
  return decode_utf8_lossy(bytes, false);
}

class byte_level final : public decoder {
 public:
  explicit byte_level(std::shared_ptr<const decoder_context> ctx) : ctx_(std::move(ctx)) {}
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out, run;
    for (auto& t : tokens) {
      if (ctx_->added_contents.count(t) == 0) {
        run.push_back(std::move(t));
        continue;
      }
      if (!run.empty()) out.push_back(byte_level_text(run));
      run.clear();
      out.push_back(std::move(t));
    }
    if (!run.empty()) out.push_back(byte_level_text(run));
    tokens = std::move(out);
  }

 private:
  std::shared_ptr<const decoder_context> ctx_;
};

class replace final : public decoder {
 public:
  replace(regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = re_.replace_all(t, content_);
  }

 private:
  regex re_;
  std::string content_;
};

int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0) return -1;
  return lo < 0 ? hi : hi * 16 + lo;  // parseInt stops at the first non-hex digit
}

class byte_fallback final : public decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    bool pending = false;
    for (auto& t : tokens) {
      int b = parse_byte_token(t);
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
        pending = true;
        continue;
      }
      if (pending) out.push_back(decode_utf8_lossy(bytes, true));
      bytes.clear();
      pending = false;
      out.push_back(std::move(t));
    }
    if (pending) out.push_back(decode_utf8_lossy(bytes, true));
    tokens = std::move(out);
  }
};

class fuse final : public decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class strip final : public decoder {
 public:
  strip(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string_view v = t;
      for (int i = 0; i < start_ && v.starts_with(content_); ++i) v.remove_prefix(content_.size());
      for (int i = 0; i < stop_ && v.ends_with(content_); ++i) v.remove_suffix(content_.size());
      t = std::string(v);
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

class metaspace final : public decoder {
 public:
  metaspace(std::string replacement, bool prefix)
      : re_(regex::literal(replacement)), prefix_(prefix) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = re_.replace_all(tokens[i], " ");
      if (prefix_ && i == 0 && tokens[i].starts_with(' ')) tokens[i].erase(0, 1);
    }
  }

 private:
  regex re_;
  bool prefix_;
};

class bpe_suffix final : public decoder {
 public:
  explicit bpe_suffix(std::string suffix) : re_(regex::literal(suffix)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = re_.replace_all(tokens[i], i + 1 == tokens.size() ? "" : " ");
  }

 private:
  regex re_;
};

class sequence final : public decoder {
 public:
  explicit sequence(std::vector<std::unique_ptr<decoder>> steps) : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<decoder>> steps_;
};

int json_int(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : 0;
}

}  // namespace

std::unique_ptr<decoder> make_decoder(const json& j, std::shared_ptr<const decoder_context> ctx) {
  if (j.is_null()) return nullptr;
  std::string type = json_type(j, "decoder");
  if (type == "ByteLevel") return std::make_unique<byte_level>(ctx);
  if (type == "Replace")
    return std::make_unique<replace>(make_pattern(j, "decoder"),
                                     json_string(j, "content", "decoder"));
  if (type == "ByteFallback") return std::make_unique<byte_fallback>();
  if (type == "Fuse") return std::make_unique<fuse>();
  if (type == "Strip")
    return std::make_unique<strip>(json_string(j, "content", "decoder"), json_int(j, "start"),
                                   json_int(j, "stop"));
  if (type == "Metaspace")
    return std::make_unique<metaspace>(json_string(j, "replacement", "decoder"),
                                       json_bool(j, "add_prefix_space", false));
  if (type == "BPEDecoder")
    return std::make_unique<bpe_suffix>(json_string(j, "suffix", "decoder"));
  if (type == "Sequence") {
    auto list = j.find("decoders");
    if (list == j.end() || !list->is_array())
      throw config_error("decoder.decoders: expected a list");
    std::vector<std::unique_ptr<decoder>> steps;
    for (const auto& x : *list) steps.push_back(make_decoder(x, ctx));
    return std::make_unique<sequence>(std::move(steps));
  }
  throw config_error("decoder.type: unsupported decoder '" + type + "'");
}

post_template make_post_template(const json& j) {
  post_template t;
  if (j.is_null()) return t;
  std::string type = json_type(j, "post_processor");
  if (type == "Sequence") {
    for (const auto& p : j.value("processors", json::array())) {
      post_template inner = make_post_template(p);
      if (inner.present) t = inner;
    }
    return t;
  }
  if (type == "TemplateProcessing") {
    t.present = true;
    bool after = false;
    for (const auto& item : j.value("single", json::array())) {
      if (item.contains("Sequence")) {
        after = true;
      } else if (item.contains("SpecialToken")) {
        (after ? t.suffix : t.prefix)
            .push_back(json_string(item["SpecialToken"], "id", "post_processor.single"));
      }
    }
    return t;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    t.present = true;
    t.prefix.push_back(j.at("cls").at(0).get<std::string>());
    t.suffix.push_back(j.at("sep").at(0).get<std::string>());
    return t;
  }
  if (type == "ByteLevel") return t;
  throw config_error("post_processor.type: unsupported post-processor '" + type + "'");
}

}  // namespace xmesh::tokenizer
