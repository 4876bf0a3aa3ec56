// Normalizers: Unicode forms via ICU, Prepend, Replace, Lowercase, Strip, StripAccents, Sequence.
#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/normalizer2.h>

#include "model/tokenizer/json_util.hpp"
#include "model/tokenizer/pipeline.hpp"
#include "model/tokenizer/regex.hpp"
#include "model/tokenizer/unicode.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;

class unicode_form final : public normalizer {
 public:
  explicit unicode_form(const std::string& form) : form_(form) {
    UErrorCode st = U_ZERO_ERROR;
    if (form == "NFD") n_ = icu::Normalizer2::getNFDInstance(st);
    if (form == "NFKC") n_ = icu::Normalizer2::getNFKCInstance(st);
    if (form == "NFKD") n_ = icu::Normalizer2::getNFKDInstance(st);
    if (U_FAILURE(st)) throw config_error("ICU has no " + form + " normalizer");
  }
  std::string apply(std::string text) const override {
    if (n_ == nullptr) return nfc_normalize(text);
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    UErrorCode st = U_ZERO_ERROR;
    n_->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink,
                      nullptr, st);
    if (U_FAILURE(st)) throw std::runtime_error("ICU: " + form_ + " normalization failed");
    return out;
  }

 private:
  std::string form_;
  const icu::Normalizer2* n_ = nullptr;  // null: NFC (fast path in nfc_normalize)
};

class prepend final : public normalizer {
 public:
  explicit prepend(std::string s) : s_(std::move(s)) {}
  std::string apply(std::string text) const override { return s_ + text; }

 private:
  std::string s_;
};

class replace final : public normalizer {
 public:
  replace(regex r, std::string content) : re_(std::move(r)), content_(std::move(content)) {}
  std::string apply(std::string text) const override { return re_.replace_all(text, content_); }

 private:
  regex re_;
  std::string content_;
};

class lowercase final : public normalizer {
 public:
  std::string apply(std::string text) const override {
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    UErrorCode st = U_ZERO_ERROR;
    icu::CaseMap::utf8ToLower(
        "", 0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr, st);
    if (U_FAILURE(st)) throw std::runtime_error("ICU: lowercase failed");
    return out;
  }
};

class strip final : public normalizer {
 public:
  strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string text) const override {
    return std::string(js_trim(text, left_, right_));
  }

 private:
  bool left_, right_;
};

class sequence final : public normalizer {
 public:
  explicit sequence(std::vector<std::unique_ptr<normalizer>> steps) : steps_(std::move(steps)) {}
  std::string apply(std::string text) const override {
    for (const auto& s : steps_) text = s->apply(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<normalizer>> steps_;
};

}  // namespace

/// The pattern of a Replace/Split component: {"String": ...} or {"Regex": ...}.
regex make_pattern(const json& j, const std::string& where) {
  auto p = j.find("pattern");
  if (p == j.end() || !p->is_object()) throw config_error(where + ".pattern: expected an object");
  if (p->contains("String")) return regex::literal(json_string(*p, "String", where + ".pattern"));
  if (p->contains("Regex")) return regex(json_string(*p, "Regex", where + ".pattern"));
  throw config_error(where + ".pattern: expected String or Regex");
}

std::unique_ptr<normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string where = "normalizer";
  std::string type = json_type(j, where);
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<unicode_form>(type);
  if (type == "Prepend") return std::make_unique<prepend>(json_string(j, "prepend", where));
  if (type == "Replace")
    return std::make_unique<replace>(make_pattern(j, where), json_string(j, "content", where));
  if (type == "Lowercase") return std::make_unique<lowercase>();
  if (type == "Strip")
    return std::make_unique<strip>(json_bool(j, "strip_left", false),
                                   json_bool(j, "strip_right", false));
  if (type == "StripAccents") return std::make_unique<replace>(regex("\\p{M}"), std::string());
  if (type == "Sequence") {
    std::vector<std::unique_ptr<normalizer>> steps;
    auto list = j.find("normalizers");
    if (list == j.end() || !list->is_array())
      throw config_error("normalizer.normalizers: expected a list");
    for (const auto& x : *list) steps.push_back(make_normalizer(x));
    return std::make_unique<sequence>(std::move(steps));
  }
  throw config_error("normalizer.type: unsupported normalizer '" + type + "'");
}

}  // namespace xmesh::tokenizer
