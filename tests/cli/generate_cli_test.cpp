// `xmesh generate` and `xmesh gen-model` from the outside: outputs on good input, one clear error
// line and a non-zero status on bad input, never a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "model/synthetic.hpp"
#include "tests/support/run_process.hpp"

namespace xmesh {
namespace {

using testing_support::read_text;
using testing_support::run_xmesh;
using testing_support::temp_dir;

class GenerateCli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir;
    model::write_synthetic_weights(model_dir(), {.family = "mixtral", .preset = "tiny", .seed = 3});
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path model_dir() { return dir_->path() / "model"; }
  static void expect_one_error_line(const testing_support::process_result& r,
                                    const std::string& needle) {
    EXPECT_NE(r.status, 0);
    EXPECT_LT(r.status, 128) << "crashed: " << r.err;
    EXPECT_EQ(r.err.find("xmesh generate: error: "), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }
  static temp_dir* dir_;
};
temp_dir* GenerateCli::dir_ = nullptr;

TEST_F(GenerateCli, TokensInIdsOutWithoutTokenizer) {
  auto r = run_xmesh({"generate", "--model", model_dir(), "--tokens", "1,2,3", "--max-new-tokens",
                      "4", "--ignore-eos"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 3) << r.out;
}

TEST_F(GenerateCli, LogitsOutIsNpyOfPromptPositions) {
  temp_dir d;
  auto npy = d.path() / "logits.npy";
  auto r = run_xmesh({"generate", "--model", model_dir(), "--tokens", "1,2,3,4,5",
                      "--max-new-tokens", "0", "--logits-out", npy, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string bytes = read_text(npy);
  ASSERT_GT(bytes.size(), 128u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_NE(bytes.find("'shape': (5, 512)"), std::string::npos);
  EXPECT_EQ(bytes.size() % 4, 0u);
  uint16_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ(bytes.size() - 10 - header_len, 5u * 512 * 4);
  EXPECT_NE(r.out.find("\"positions\":5"), std::string::npos) << r.out;
}

TEST_F(GenerateCli, TokenOutsideVocabulary) {
  expect_one_error_line(run_xmesh({"generate", "--model", model_dir(), "--tokens", "1,512"}),
                        "token id 512 outside the vocabulary [0, 512)");
}

TEST_F(GenerateCli, PromptLongerThanContext) {
  std::string ids = "1";
  for (int i = 0; i < 600; ++i) ids += ",1";
  expect_one_error_line(run_xmesh({"generate", "--model", model_dir(), "--tokens", ids}),
                        "exceeds the context of 512 positions");
}

TEST_F(GenerateCli, BadFlags) {
  expect_one_error_line(run_xmesh({"generate", "--model", model_dir(), "--tokens", "1,x"}),
                        "--tokens: expected an integer, got 'x'");
  expect_one_error_line(run_xmesh({"generate", "--model", model_dir()}),
                        "give exactly one of --prompt and --tokens");
  expect_one_error_line(run_xmesh({"generate", "--bogus"}), "unknown argument '--bogus'");
  expect_one_error_line(
      run_xmesh({"generate", "--model", model_dir(), "--tokens", "1", "--top-p", "0"}),
      "--top-p: must be in (0, 1]");
}

TEST_F(GenerateCli, MissingModelDirectory) {
  expect_one_error_line(run_xmesh({"generate", "--model", "/nonexistent/model", "--tokens", "1"}),
                        "/nonexistent/model: not a model directory");
}

TEST_F(GenerateCli, UnknownArchitecture) {
  temp_dir d;
  std::filesystem::copy(model_dir(), d.path() / "m");
  std::ofstream(d.path() / "m" / "config.json") << R"({"architectures": ["GptOssForCausalLM"]})";
  expect_one_error_line(
      run_xmesh({"generate", "--model", d.path() / "m", "--tokens", "1"}),
      "unsupported architecture 'GptOssForCausalLM' (supported: MixtralForCausalLM");
}

TEST_F(GenerateCli, CorruptSafetensorsHeader) {
  temp_dir d;
  std::filesystem::copy(model_dir(), d.path() / "m");
  auto st = d.path() / "m" / "model.safetensors";
  std::filesystem::resize_file(st, 100);  // header now runs past the end of the file
  expect_one_error_line(run_xmesh({"generate", "--model", d.path() / "m", "--tokens", "1"}),
                        "exceeds the file");
}

TEST_F(GenerateCli, PromptNeedsTokenizer) {
  expect_one_error_line(run_xmesh({"generate", "--model", model_dir(), "--prompt", "hello"}),
                        "tokenizer.json");
}

TEST(GenModelCli, UnknownFamilyAndPreset) {
  temp_dir d;
  auto r =
      run_xmesh({"gen-model", "--family", "llama", "--preset", "tiny", "--out", d.path() / "m"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("unknown family 'llama' (supported: mixtral, qwen2_moe, qwen3_moe, olmoe)"),
            std::string::npos)
      << r.err;
  r = run_xmesh({"gen-model", "--family", "olmoe", "--preset", "huge", "--out", d.path() / "m"});
  EXPECT_NE(r.err.find("unknown preset 'huge'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace xmesh
