// The engine's invariants on every family: greedy output independent of thread count and batch
// composition (bit for bit), and clear errors for bad models and bad requests.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "model/generator.hpp"
#include "model/synthetic.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::model {
namespace {

using testing_support::temp_dir;

struct engine {
  loaded_model m;
  kernels::thread_pool pool;
  local_expert_backend experts;
  transformer net;
  engine(const std::filesystem::path& dir, int threads)
      : m(load_model(dir)),
        pool(threads),
        experts(m.weights, pool),
        net(m.config, m.weights, pool, experts) {}
};

std::vector<float> forward_logits(engine& e, const std::vector<int32_t>& tokens,
                                  const std::vector<size_t>& chunks) {
  kv_cache cache(e.m.config, static_cast<int64_t>(tokens.size()));
  std::vector<float> all, logits;
  size_t at = 0;
  for (size_t n : chunks) {
    e.net.forward(std::span(tokens).subspan(at, n), cache, logits_for::all, logits);
    all.insert(all.end(), logits.begin(), logits.end());
    at += n;
  }
  return all;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Engine : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    write_synthetic_weights(dir_.path(), {.family = GetParam(), .preset = "tiny", .seed = 11});
  }
  temp_dir dir_;
  std::vector<int32_t> prompt_ = {5, 99, 311, 42, 7, 250, 18, 400, 3};
};

TEST_P(Engine, GreedyOutputIdenticalForAnyThreadCount) {
  generation_options o{.max_new_tokens = 10, .keep_all_logits = true, .stop_at_eos = false};
  engine one(dir_.path(), 1);
  auto base = generate(one.net, prompt_, o);
  ASSERT_EQ(base.generated.size(), 10u);
  for (int threads : {2, 3}) {
    engine e(dir_.path(), threads);
    auto r = generate(e.net, prompt_, o);
    EXPECT_EQ(r.generated, base.generated) << threads << " threads";
    EXPECT_TRUE(bit_equal(r.logits, base.logits)) << threads << " threads";
  }
}

TEST_P(Engine, PrefillBatchEqualsTokenByTokenBitForBit) {
  engine e(dir_.path(), 2);
  auto batch = forward_logits(e, prompt_, {prompt_.size()});
  auto steps = forward_logits(e, prompt_, std::vector<size_t>(prompt_.size(), 1));
  auto mixed = forward_logits(e, prompt_, {4, 1, 4});
  EXPECT_TRUE(bit_equal(batch, steps));
  EXPECT_TRUE(bit_equal(batch, mixed));
}

TEST_P(Engine, SamplingIsSeededAndDeterministic) {
  engine e(dir_.path(), 2);
  generation_options o{.max_new_tokens = 16,
                       .sampling = {.temperature = 1.0, .top_k = 50, .top_p = 0.9, .seed = 3},
                       .stop_at_eos = false};
  auto a = generate(e.net, prompt_, o);
  auto b = generate(e.net, prompt_, o);
  EXPECT_EQ(a.generated, b.generated);
  o.sampling.seed = 4;
  EXPECT_NE(generate(e.net, prompt_, o).generated, a.generated);
}

TEST_P(Engine, RejectsTokenOutsideVocabulary) {
  engine e(dir_.path(), 1);
  try {
    generate(e.net, {1, 2, static_cast<int32_t>(e.m.config.vocab)}, {});
    FAIL();
  } catch (const std::runtime_error& err) {
    EXPECT_EQ(std::string(err.what()), "token id " + std::to_string(e.m.config.vocab) +
                                           " outside the vocabulary [0, " +
                                           std::to_string(e.m.config.vocab) + ")");
  }
}

TEST_P(Engine, RejectsPromptLongerThanContext) {
  engine e(dir_.path(), 1);
  std::vector<int32_t> long_prompt(e.m.config.max_positions + 1, 1);
  try {
    generate(e.net, long_prompt, {.max_new_tokens = 1});
    FAIL();
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("exceeds the context of"), std::string::npos)
        << err.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Engine,
                         testing::Values("mixtral", "qwen2_moe", "qwen3_moe", "olmoe"));

void edit_config(const std::filesystem::path& dir, const std::string& from, const std::string& to) {
  std::ifstream in(dir / "config.json");
  std::stringstream text;
  text << in.rdbuf();
  std::string s = std::regex_replace(text.str(), std::regex(from), to);
  ASSERT_NE(s, text.str()) << "pattern not found: " << from;
  std::ofstream(dir / "config.json") << s;
}

std::string load_error(const std::filesystem::path& dir) {
  try {
    load_model(dir);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelLoading, MisShapedTensorNamesExpectedAndFound) {
  temp_dir d;
  write_synthetic_weights(d.path(), {.family = "mixtral", .preset = "tiny"});
  edit_config(d.path(), "\"intermediate_size\": 32", "\"intermediate_size\": 48");
  auto err = load_error(d.path());
  EXPECT_NE(err.find("tensor 'model.layers.0.block_sparse_moe.experts.0.w1.weight': expected shape "
                     "[48, 64], found [32, 64]"),
            std::string::npos)
      << err;
}

TEST(ModelLoading, MissingTensorIsNamed) {
  temp_dir d;
  write_synthetic_weights(d.path(), {.family = "qwen3_moe", .preset = "tiny"});  // tied head
  edit_config(d.path(), "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
  EXPECT_EQ(load_error(d.path()), "missing tensor 'lm_head.weight'");
}

TEST(ModelLoading, Bf16AndF16ModelsRunAndAgreeWithF32Closely) {
  std::vector<float> reference;
  for (auto type : {kernels::dtype::f32, kernels::dtype::bf16, kernels::dtype::f16}) {
    temp_dir d;
    write_synthetic_weights(d.path(),
                            {.family = "olmoe", .preset = "tiny", .seed = 2, .type = type});
    engine e(d.path(), 2);
    auto logits = forward_logits(e, {1, 2, 3, 4}, {4});
    if (reference.empty()) {
      reference = logits;
      continue;
    }
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(logits[i]) - reference[i]));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(reference[i])));
    }
    EXPECT_LT(max_diff, 0.1 * max_abs) << kernels::dtype_name(type);  // rounding of weights only
  }
}

}  // namespace
}  // namespace xmesh::model
