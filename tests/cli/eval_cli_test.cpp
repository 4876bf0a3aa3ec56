// `xmesh eval` and `xmesh quantize` from the outside: perplexity and routing statistics with the
// invariants they must keep, one clear error line on bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/synthetic.hpp"
#include "tests/support/run_process.hpp"

namespace xmesh {
namespace {

using testing_support::run_xmesh;
using testing_support::temp_dir;

class EvalCli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir;
    model::write_synthetic_model(model_dir(), {.family = "qwen3_moe", .preset = "tiny", .seed = 4});
    std::ofstream(text_file())
        << "The mixture of experts routes each token to a few experts. "
           "Edge devices hold some of them; the rest stay in the datacenter.\n";
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path model_dir() { return dir_->path() / "model"; }
  static std::filesystem::path text_file() { return dir_->path() / "text.txt"; }
  static void expect_one_error_line(const testing_support::process_result& r,
                                    const std::string& needle) {
    EXPECT_NE(r.status, 0);
    EXPECT_LT(r.status, 128) << "crashed: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }
  static nlohmann::json eval(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"eval",   "--model",   model_dir(),
                                     "--file", text_file(), "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run_xmesh(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }
  static temp_dir* dir_;
};
temp_dir* EvalCli::dir_ = nullptr;

TEST_F(EvalCli, PerplexityIsTheExponentOfTheMeanNllAndBytesAreTheFiles) {
  auto j = eval();
  const double tokens = j["tokens"].get<double>();
  EXPECT_GT(tokens, 20);
  EXPECT_EQ(j["bytes"].get<int64_t>(),
            static_cast<int64_t>(std::filesystem::file_size(text_file())));
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["nll_nats"].get<double>() / tokens), 1e-9);
  EXPECT_NEAR(j["bits_per_byte"].get<double>(),
              j["nll_nats"].get<double>() / std::log(2.0) / j["bytes"].get<double>(), 1e-12);
  // A random model is no better than a uniform guess over its vocabulary (512 tokens).
  EXPECT_GT(j["perplexity"].get<double>(), 256);
}

TEST_F(EvalCli, WindowsScoreEveryTokenOnceWhateverTheirSize) {
  auto whole = eval({"--context", "256"});
  auto small = eval({"--context", "8", "--stride", "3"});
  EXPECT_EQ(whole["tokens"], small["tokens"]);
  // Less context changes the predictions, so the totals differ, but not wildly.
  EXPECT_NE(whole["nll_nats"], small["nll_nats"]);
  EXPECT_NEAR(whole["nll_nats"].get<double>() / small["nll_nats"].get<double>(), 1.0, 0.2);
}

TEST_F(EvalCli, RoutingStatisticsCoverEveryMoeLayer) {
  auto j = eval({"--routing"});
  ASSERT_EQ(j["routing"].size(), 2u);  // tiny: two MoE layers
  for (const auto& l : j["routing"]) {
    double total = 0;
    for (double s : l["share"]) total += s;
    EXPECT_NEAR(total, 1.0, 1e-9);
    EXPECT_EQ(l["share"].size(), 8u);
    EXPECT_EQ(l["tokens"], j["tokens"]);
    EXPECT_GE(l["reuse_previous_token"].get<double>(), 0.0);
    EXPECT_LE(l["reuse_previous_token"].get<double>(), 1.0);
  }
  EXPECT_GE(j["routing"][0]["pregate_accuracy"].get<double>(), 0.0);
  EXPECT_TRUE(j["routing"][1]["pregate_accuracy"].is_null());  // no next layer to predict
}

TEST_F(EvalCli, BadTextFilesGiveOneClearLine) {
  temp_dir d;
  auto empty = d.path() / "empty.txt", latin1 = d.path() / "latin1.txt";
  std::ofstream(empty).flush();
  std::ofstream(latin1) << "caf\xe9 au lait";
  expect_one_error_line(run_xmesh({"eval", "--model", model_dir(), "--file", empty}),
                        "empty.txt: empty: no text");
  expect_one_error_line(run_xmesh({"eval", "--model", model_dir(), "--file", latin1}),
                        "latin1.txt: not UTF-8 text (bad byte at offset 3)");
  expect_one_error_line(run_xmesh({"eval", "--model", model_dir(), "--file", d.path() / "none"}),
                        "none: cannot open");
  expect_one_error_line(
      run_xmesh({"eval", "--model", model_dir(), "--file", text_file(), "--stride", "0"}),
      "--stride");
}

TEST(QuantizeCli, BadFlagsAndModelsGiveOneClearLine) {
  temp_dir d;
  auto r = run_xmesh({"quantize", "--model", d.path(), "--out", d.path() / "q", "--dtype", "q3"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--dtype: unknown quantized format 'q3' (supported: q8, q4, fp8)"),
            std::string::npos)
      << r.err;
  r = run_xmesh(
      {"quantize", "--model", d.path() / "missing", "--out", d.path() / "q", "--dtype", "q8"});
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.status, 128);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace xmesh
