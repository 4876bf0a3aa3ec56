// The demo tokenizer, bad input (one clear error each) and the `xmesh tokenize` command.
#include "model/tokenizer/tokenizer.hpp"

#include <array>
#include <cstdio>

#include "tests/unit/tokenizer/reference_fixture.hpp"

namespace xmesh::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("xmesh_tok_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::string load_error(const fs::path& file) {
  try {
    (void)tokenizer::load(file);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(DemoTokenizer, HasExactlyTheRequestedVocabulary) {
  for (int32_t size : {300, 512, 1000, 4096}) {
    fs::path d = fresh_dir("demo" + std::to_string(size));
    write_demo_tokenizer(d, size);
    auto tok = tokenizer::load(d / "tokenizer.json");
    EXPECT_EQ(tok.vocab_size(), static_cast<size_t>(size));
    ASSERT_TRUE(tok.eos_id().has_value());
    EXPECT_EQ(tok.bos_id(), tok.eos_id());
    EXPECT_TRUE(tok.add_bos());
    std::string text = "Hello world! The experts route tokens; 42 nodes. 你好 🚀\n";
    auto ids = tok.encode(text, false);
    EXPECT_LT(ids.size(), text.size());
    EXPECT_EQ(tok.decode(ids), text);
    auto with_bos = tok.encode(text, true);
    ASSERT_EQ(with_bos.size(), ids.size() + 1);
    EXPECT_EQ(with_bos[0], *tok.bos_id());
    fs::remove_all(d);
  }
}

TEST(DemoTokenizer, IsDeterministicAndRejectsTinyVocabularies) {
  fs::path a = fresh_dir("det_a"), b = fresh_dir("det_b");
  write_demo_tokenizer(a, 700);
  write_demo_tokenizer(b, 700);
  EXPECT_EQ(testing::slurp(a / "tokenizer.json"), testing::slurp(b / "tokenizer.json"));
  EXPECT_THROW(write_demo_tokenizer(a, 299), std::runtime_error);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(DemoTokenizer, MatchesTheReferenceImplementation) {
  fs::path d = fresh_dir("demo_ref");
  write_demo_tokenizer(d, 1000);
  std::string error;
  json ref = testing::run_reference(d.string(), error);
  ASSERT_TRUE(error.empty()) << error;
  auto tok = tokenizer::load(d / "tokenizer.json");
  int bad = 0;
  for (const auto& c : ref["encode"]) {
    if (json(tok.encode(c["text"].get<std::string>(), false)) != c["ids"]) ++bad;
    if (json(tok.encode(c["text"].get<std::string>(), true)) != c["ids_special"]) ++bad;
  }
  EXPECT_EQ(bad, 0);
  fs::remove_all(d);
}

TEST(TokenizerErrors, MalformedJsonNamesTheFile) {
  fs::path d = fresh_dir("bad_json");
  write(d / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  std::string e = load_error(d / "tokenizer.json");
  EXPECT_NE(e.find("tokenizer.json"), std::string::npos) << e;
  EXPECT_NE(e.find("malformed JSON"), std::string::npos) << e;
  fs::remove_all(d);
}

TEST(TokenizerErrors, UnsupportedModelTypeIsNamed) {
  fs::path d = fresh_dir("bad_type");
  write(d / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  std::string e = load_error(d / "tokenizer.json");
  EXPECT_NE(e.find("unsupported model type 'WordPiece'"), std::string::npos) << e;
  fs::remove_all(d);
}

TEST(TokenizerErrors, BadFieldsAreNamed) {
  fs::path d = fresh_dir("bad_fields");
  const std::array<std::pair<const char*, const char*>, 5> cases = {{
      {R"([1, 2])", "expected a JSON object"},
      {R"({"model": {"type": "BPE", "vocab": [1], "merges": []}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 3}})", "model.merges"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
           "pre_tokenizer": {"type": "Nonsense"}})",
       "unsupported pre-tokenizer 'Nonsense'"},
  }};
  for (const auto& [text, expected] : cases) {
    write(d / "tokenizer.json", text);
    std::string e = load_error(d / "tokenizer.json");
    EXPECT_NE(e.find(expected), std::string::npos) << text << " -> " << e;
  }
  EXPECT_NE(load_error(d / "missing.json").find("cannot open"), std::string::npos);
  fs::remove_all(d);
}

TEST(TokenizerErrors, InvalidUtf8InputIsEncodedSafely) {
  fs::path d = fresh_dir("utf8");
  write_demo_tokenizer(d, 400);
  auto tok = tokenizer::load(d / "tokenizer.json");
  auto ids = tok.encode(std::string("ok \xff\xfe bad \xe4\xb8", 12), false);
  EXPECT_EQ(tok.decode(ids), "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD");
  fs::remove_all(d);
}

// -- the command line ----------------------------------------------------------------------

struct run_result {
  int status;
  std::string out;
};

run_result run_xmesh(const std::string& args) {
  std::string cmd = testing::env_or("XMESH_BIN", "xmesh") + " " + args + " 2>&1";
  run_result r{-1, {}};
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  r.status = ::pclose(p);
  return r;
}

class TokenizeCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_dir("cli");
    write_demo_tokenizer(dir_, 600);
    tok_.emplace(tokenizer::load(dir_ / "tokenizer.json"));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string flag() const { return "--tokenizer '" + (dir_ / "tokenizer.json").string() + "'"; }
  static std::string joined(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s.append(i ? " " : "").append(std::to_string(ids[i]));
    return s + "\n";
  }
  fs::path dir_;
  std::optional<tokenizer> tok_;
};

TEST_F(TokenizeCommand, EncodesTextAndFiles) {
  auto r = run_xmesh("tokenize " + flag() + " --text 'Hello world'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, joined(tok_->encode("Hello world", false)));
  r = run_xmesh("tokenize " + flag() + " --text 'Hello world' --add-special --json");
  EXPECT_EQ(json::parse(r.out), json({{"ids", tok_->encode("Hello world", true)}}));
  std::string bytes = "line one\r\nline two\n\n  \t end \xf0\x9f\x9a\x80";
  write(dir_ / "input.txt", bytes);
  r = run_xmesh("tokenize " + flag() + " --file '" + (dir_ / "input.txt").string() + "'");
  EXPECT_EQ(r.out, joined(tok_->encode(bytes, false)));
}

TEST_F(TokenizeCommand, Decodes) {
  auto ids = tok_->encode("decode me, please", false);
  std::string list;
  for (size_t i = 0; i < ids.size(); ++i) list.append(i ? "," : "").append(std::to_string(ids[i]));
  auto r = run_xmesh("tokenize " + flag() + " --decode " + list);
  EXPECT_EQ(r.out, "decode me, please\n");
}

TEST_F(TokenizeCommand, ErrorsAreOneLine) {
  for (const std::string& args : std::vector<std::string>{
           "tokenize " + flag() + " --decode 1,999999",
           std::string("tokenize --tokenizer /nonexistent/tokenizer.json --text x"),
           "tokenize " + flag(), "tokenize " + flag() + " --text a --file b"}) {
    auto r = run_xmesh(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_TRUE(r.out.starts_with("xmesh tokenize: error: ")) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  }
}

}  // namespace
}  // namespace xmesh::tokenizer
