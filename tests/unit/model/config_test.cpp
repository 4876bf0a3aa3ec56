#include "model/config.hpp"

#include <gtest/gtest.h>

namespace xmesh::model {
namespace {

std::string error_of(const std::string& json) {
  try {
    parse_config(json, "config.json");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

const char* mixtral =
    R"({"architectures":["MixtralForCausalLM"],"hidden_size":64,"num_hidden_layers":2,
  "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,"num_local_experts":8,
  "num_experts_per_tok":2,"intermediate_size":32})";

TEST(Config, AppliesFamilyDefaults) {
  auto c = parse_config(mixtral, "config.json");
  EXPECT_EQ(c.arch, family::mixtral);
  EXPECT_EQ(c.head_dim, 16);  // hidden_size / heads when the config omits head_dim
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.rope_theta, 1e6);
}

TEST(Config, QwenDenseLayers) {
  auto c = parse_config(
      R"({"architectures":["Qwen2MoeForCausalLM"],"hidden_size":64,"num_hidden_layers":4,
    "num_attention_heads":4,"vocab_size":100,"num_experts":8,"num_experts_per_tok":2,
    "moe_intermediate_size":32,"intermediate_size":128,"decoder_sparse_step":2,"mlp_only_layers":[3]})",
      "config.json");
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_FALSE(c.is_moe_layer(3));
  EXPECT_TRUE(c.attention_bias);
}

TEST(Config, UnknownArchitectureListsSupported) {
  auto err = error_of(R"({"architectures":["LlamaForCausalLM"]})");
  EXPECT_NE(err.find("unsupported architecture 'LlamaForCausalLM'"), std::string::npos) << err;
  EXPECT_NE(
      err.find("MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM"),
      std::string::npos)
      << err;
}

TEST(Config, MissingFieldIsNamed) {
  std::string j = mixtral;
  j.replace(j.find("\"num_local_experts\":8,"), 22, "");
  EXPECT_EQ(error_of(j), "config.json: field 'num_local_experts': missing");
}

TEST(Config, WrongTypeIsNamed) {
  std::string j = mixtral;
  j.replace(j.find("\"hidden_size\":64"), 16, "\"hidden_size\":\"64\"");
  EXPECT_EQ(error_of(j), "config.json: field 'hidden_size': expected an integer");
}

TEST(Config, InconsistentHeadsRejected) {
  std::string j = mixtral;
  j.replace(j.find("\"num_key_value_heads\":2"), 23, "\"num_key_value_heads\":3");
  EXPECT_NE(error_of(j).find("num_key_value_heads"), std::string::npos);
}

TEST(Config, NotJson) { EXPECT_EQ(error_of("{oops"), "config.json: not a valid JSON object"); }

}  // namespace
}  // namespace xmesh::model
