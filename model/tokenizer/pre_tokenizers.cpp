// Pre-tokenizers: Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit,
// Replace and Sequence, each splitting the way the reference does.
#include <algorithm>
#include <cctype>

#include "model/tokenizer/json_util.hpp"
#include "model/tokenizer/pipeline.hpp"
#include "model/tokenizer/regex.hpp"

namespace xmesh::tokenizer {

namespace {

using nlohmann::json;

// The GPT-2 split the ByteLevel pre-tokenizer applies when use_regex is on.
constexpr const char* gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* punctuation_class =
    "\\p{P}\\x{21}-\\x{2F}\\x{3A}-\\x{40}\\x{5B}-\\x{60}\\x{7B}-\\x{7E}";

enum class split_mode { matches, isolated, removed };

// Splits every piece with `re`: keeps the matches only, or the gaps and matches, or the gaps.
void split_pieces(const regex& re, split_mode mode, std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  out.reserve(pieces.size() * 4);
  for (const auto& piece : pieces) {
    std::string_view text = piece;
    size_t prev = 0;
    for (auto [b, e] : re.find_all(text)) {
      if (mode != split_mode::matches && prev < b) out.emplace_back(text.substr(prev, b - prev));
      if (mode != split_mode::removed && e > b) out.emplace_back(text.substr(b, e - b));
      prev = e;
    }
    if (mode != split_mode::matches && prev < text.size()) out.emplace_back(text.substr(prev));
  }
  pieces = std::move(out);
}

class split final : public pre_tokenizer {
 public:
  split(regex re, split_mode mode) : re_(std::move(re)), mode_(mode) {}
  void apply(std::vector<std::string>& pieces, size_t) const override {
    split_pieces(re_, mode_, pieces);
  }

 private:
  regex re_;
  split_mode mode_;
};

// Words stay raw bytes: the BPE model works on bytes, which is the byte-level alphabet 1:1.
class byte_level_step final : public pre_tokenizer {
 public:
  byte_level_step(bool prefix_space, bool use_regex) : prefix_space_(prefix_space) {
    if (use_regex) re_.emplace(gpt2_pattern);
  }
  void apply(std::vector<std::string>& pieces, size_t) const override {
    if (prefix_space_)
      for (auto& p : pieces)
        if (p.empty() || p[0] != ' ') p.insert(p.begin(), ' ');
    if (re_) split_pieces(*re_, split_mode::matches, pieces);
  }
  bool byte_level() const override { return true; }

 private:
  bool prefix_space_;
  std::optional<regex> re_;
};

class metaspace final : public pre_tokenizer {
 public:
  metaspace(std::string replacement, std::string str_rep, bool prefix, std::string scheme)
      : replacement_(std::move(replacement)),
        str_rep_(std::move(str_rep)),
        prefix_(prefix),
        scheme_(std::move(scheme)),
        space_(regex::literal(" ")) {}
  void apply(std::vector<std::string>& pieces, size_t section) const override {
    for (auto& p : pieces) {
      p = space_.replace_all(p, str_rep_);
      bool want = scheme_ == "always" || (scheme_ == "first" && section == 0);
      if (prefix_ && want && !std::string_view(p).starts_with(replacement_)) p = str_rep_ + p;
    }
  }

 private:
  std::string replacement_, str_rep_;
  bool prefix_;
  std::string scheme_;
  regex space_;
};

class replace final : public pre_tokenizer {
 public:
  replace(regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& pieces, size_t) const override {
    for (auto& p : pieces) p = re_.replace_all(p, content_);
  }

 private:
  regex re_;
  std::string content_;
};

class sequence final : public pre_tokenizer {
 public:
  explicit sequence(std::vector<std::unique_ptr<pre_tokenizer>> steps) : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& pieces, size_t section) const override {
    for (const auto& s : steps_) s->apply(pieces, section);
  }
  bool byte_level() const override {
    return std::any_of(steps_.begin(), steps_.end(), [](const auto& s) { return s->byte_level(); });
  }

 private:
  std::vector<std::unique_ptr<pre_tokenizer>> steps_;
};

std::unique_ptr<pre_tokenizer> make_split(const json& j) {
  std::string behavior = j.value("behavior", std::string("Isolated"));
  std::transform(behavior.begin(), behavior.end(), behavior.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  split_mode mode = json_bool(j, "invert", false) ? split_mode::matches
                    // NOTE: the reference treats every behavior but Removed as Isolated, and a
                    // String pattern under Removed keeps its delimiters (a capturing group).
                    : behavior == "removed" && j["pattern"].contains("Regex")
                        ? split_mode::removed
                        : split_mode::isolated;
  return std::make_unique<split>(make_pattern(j, "pre_tokenizer"), mode);
}

std::unique_ptr<pre_tokenizer> make_sequence(const json& j) {
  auto list = j.find("pretokenizers");
  if (list == j.end() || !list->is_array())
    throw config_error("pre_tokenizer.pretokenizers: expected a list");
  std::vector<std::unique_ptr<pre_tokenizer>> steps;
  for (const auto& x : *list) {
    if (!steps.empty() && steps.back()->byte_level())
      throw config_error("pre_tokenizer: a step after ByteLevel is not supported");
    steps.push_back(make_pre_tokenizer(x));
  }
  return std::make_unique<sequence>(std::move(steps));
}

}  // namespace

std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = json_type(j, "pre_tokenizer");
  if (type == "Split") return make_split(j);
  if (type == "Sequence") return make_sequence(j);
  if (type == "ByteLevel")
    return std::make_unique<byte_level_step>(json_bool(j, "add_prefix_space", false),
                                             json_bool(j, "use_regex", true));
  if (type == "Metaspace") {
    std::string rep = json_string(j, "replacement", "pre_tokenizer");
    std::string str_rep =
        j.contains("str_rep") && j["str_rep"].is_string() ? j["str_rep"].get<std::string>() : rep;
    if (str_rep.empty()) str_rep = rep;
    // NOTE: like the reference, only an explicit add_prefix_space turns the prefix on.
    return std::make_unique<metaspace>(rep, str_rep, json_bool(j, "add_prefix_space", false),
                                       j.value("prepend_scheme", std::string("always")));
  }
  if (type == "Digits") {
    bool each = json_bool(j, "individual_digits", false);
    return std::make_unique<split>(regex(each ? "[^\\d]+|\\d" : "[^\\d]+|\\d+"),
                                   split_mode::matches);
  }
  if (type == "Punctuation")
    return std::make_unique<split>(
        regex(std::string("[^") + punctuation_class + "]+|[" + punctuation_class + "]+"),
        split_mode::matches);
  if (type == "Whitespace")
    return std::make_unique<split>(regex("\\w+|[^\\w\\s]+"), split_mode::matches);
  if (type == "WhitespaceSplit") return std::make_unique<split>(regex("\\S+"), split_mode::matches);
  if (type == "Replace")
    return std::make_unique<replace>(make_pattern(j, "pre_tokenizer"),
                                     json_string(j, "content", "pre_tokenizer"));
  throw config_error("pre_tokenizer.type: unsupported pre-tokenizer '" + type + "'");
}

}  // namespace xmesh::tokenizer
