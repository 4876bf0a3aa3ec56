// Quantized checkpoints: the quantizers' codes, `xmesh quantize`'s choices and files, and one
// clear error naming the tensor or field for every malformed quantized model.
#include "model/quantize.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "kernels/quant.hpp"
#include "model/synthetic.hpp"
#include "model/weights.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::model {
namespace {

using kernels::weight_format;
using testing_support::temp_dir;

TEST(Fp8Codes, EveryFiniteCodeRoundTripsAndRoundingIsToNearest) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;  // NaN codes
    float v = kernels::quant::fp8_to_f32(static_cast<uint8_t>(c));
    EXPECT_EQ(kernels::quant::f32_to_fp8(v), c == 0x80 ? 0x80 : c) << c;
  }
  EXPECT_EQ(kernels::quant::fp8_to_f32(0x7E), 448.0f);
  EXPECT_EQ(kernels::quant::fp8_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(kernels::quant::f32_to_fp8(1e6f), 0x7E);                  // saturates
  EXPECT_EQ(kernels::quant::f32_to_fp8(1.0625f), 0x38);               // tie 1 | 1.125: even
  EXPECT_EQ(kernels::quant::f32_to_fp8(1.1f), 0x39);
}

TEST(GroupQuantizers, CodesTimesScalesStayWithinHalfAStep) {
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  const int64_t rows = 3, cols = 96;
  std::vector<float> w(rows * cols);
  for (auto& v : w) v = dist(gen);
  for (auto f : {weight_format::q8, weight_format::q4}) {
    kernels::matrix_view m{nullptr, f, rows, cols};
    std::vector<uint8_t> codes(m.data_bytes());
    std::vector<uint16_t> scales(m.scale_bytes() / 2);
    if (f == weight_format::q8)
      kernels::quant::quantize_q8(w.data(), rows, cols, reinterpret_cast<int8_t*>(codes.data()),
                                  scales.data());
    else
      kernels::quant::quantize_q4(w.data(), rows, cols, codes.data(), scales.data());
    m.data = codes.data();
    m.scales = scales.data();
    std::vector<float> back(cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::row_to_f32(m, r, back.data());
      for (int64_t c = 0; c < cols; ++c) {
        float step = std::fabs(kernels::f16_to_f32(scales[(r * cols + c) / 32]));
        // Half a step, plus what rounding the scale to f16 moves the largest code; q4's code 7
        // stands for everything beyond 6.5 steps on the side opposite the largest weight (up to
        // one step away: the symmetric 4-bit design).
        bool clamped = f == weight_format::q4 && std::fabs(back[c]) >= 7 * step * (1 - 1e-3f);
        EXPECT_LE(std::fabs(back[c] - w[r * cols + c]),
                  step * (clamped ? 1.0f : 0.5f) + step * 8 * 1e-3f)
            << kernels::format_name(f) << " r" << r << " c" << c;
      }
    }
  }
}

TEST(GroupQuantizers, Q4MapsEachGroupsLargestWeightToCodeMinusEight) {
  std::vector<float> w(32, 0.01f);
  w[20] = -0.5f;  // the largest magnitude: code -8 exactly, so it is represented exactly
  std::vector<uint8_t> packed(16);
  uint16_t scale = 0;
  kernels::quant::quantize_q4(w.data(), 1, 32, packed.data(), &scale);
  EXPECT_EQ(kernels::quant::q4_code(packed.data(), 20), -8);
  EXPECT_EQ(kernels::quant::q4_code(packed.data(), 20) * kernels::f16_to_f32(scale), -0.5f);
  EXPECT_EQ(packed[4] >> 4, 0);  // weight 20 is the high nibble of byte 4, stored as -8 + 8
}

TEST(Quantizes, LinearWeightsOnlyAndWholeGroups) {
  quantize_options q8{weight_format::q8, false}, experts{weight_format::q8, true};
  EXPECT_TRUE(quantizes("model.layers.0.self_attn.q_proj.weight", {64, 64}, q8));
  EXPECT_TRUE(quantizes("lm_head.weight", {512, 64}, q8));
  EXPECT_FALSE(quantizes("model.embed_tokens.weight", {512, 64}, q8));
  EXPECT_FALSE(quantizes("model.layers.0.block_sparse_moe.gate.weight", {8, 64}, q8));
  EXPECT_FALSE(quantizes("model.layers.0.mlp.shared_expert_gate.weight", {1, 64}, q8));
  EXPECT_FALSE(quantizes("model.layers.0.input_layernorm.weight", {64}, q8));
  EXPECT_FALSE(quantizes("model.layers.0.self_attn.q_proj.weight", {64, 100}, q8));
  EXPECT_FALSE(quantizes("model.layers.0.self_attn.q_proj.weight", {64, 64}, experts));
  EXPECT_TRUE(quantizes("model.layers.0.mlp.experts.3.down_proj.weight", {64, 32}, experts));
  EXPECT_FALSE(quantizes("model.layers.0.mlp.experts.3.down_proj.weight", {64, 32},
                         {weight_format::fp8, false}));  // fp8 needs 128 x 128 blocks
}

void write_model(const std::filesystem::path& dir, const std::string& family,
                 const std::string& preset, std::optional<weight_format> quant,
                 kernels::dtype type = kernels::dtype::bf16) {
  synthetic_options o;
  o.family = family;
  o.preset = preset;
  o.seed = 5;
  o.type = type;
  if (quant) o.quant = quantize_options{*quant, false};
  write_synthetic_model(dir, o);
}

std::string file_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(QuantizeModel, GenModelWritesWhatQuantizingThePlainModelWrites) {
  temp_dir tmp;
  write_model(tmp.path() / "bf16", "qwen3_moe", "tiny", std::nullopt);
  write_model(tmp.path() / "q4", "qwen3_moe", "tiny", weight_format::q4);
  auto report = quantize_model(tmp.path() / "bf16", tmp.path() / "out", {weight_format::q4, false});
  EXPECT_GT(report.quantized, 0);
  EXPECT_LT(report.bytes_after, report.bytes_before * 6 / 10);  // the embedding stays bf16
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json"})
    EXPECT_EQ(file_text(tmp.path() / "q4" / f), file_text(tmp.path() / "out" / f)) << f;
  auto m = load_model(tmp.path() / "out");
  EXPECT_EQ(m.config.quant, quant_method::xmesh);
  EXPECT_EQ(m.weights.layers[0].q.format, weight_format::q4);
  EXPECT_EQ(m.weights.layers[0].experts[0].down.format, weight_format::q4);
  EXPECT_EQ(m.weights.layers[0].router.format, weight_format::bf16);
  EXPECT_EQ(m.weights.embed.format, weight_format::bf16);
  // Already quantized: refused, naming the file.
  try {
    quantize_model(tmp.path() / "out", tmp.path() / "again", {weight_format::q8, false});
    FAIL() << "quantized twice";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("already quantized"), std::string::npos) << e.what();
  }
}

TEST(QuantizeModel, ExpertsOnlyLeavesAttentionAndHeadPlain) {
  temp_dir tmp;
  write_model(tmp.path() / "f16", "mixtral", "tiny", std::nullopt, kernels::dtype::f16);
  quantize_model(tmp.path() / "f16", tmp.path() / "q8", {weight_format::q8, true});
  auto m = load_model(tmp.path() / "q8");
  EXPECT_EQ(m.weights.layers[1].experts[7].gate.format, weight_format::q8);
  EXPECT_EQ(m.weights.layers[1].o.format, weight_format::f16);
  EXPECT_EQ(m.weights.lm_head.format, weight_format::f16);
}

// Rewrites dir/model.safetensors: `edit` may change a tensor's stored form or drop it (nullopt).
void rewrite(const std::filesystem::path& dir,
             const std::function<std::optional<stored_tensor>(stored_tensor)>& edit) {
  std::vector<stored_tensor> out;
  {
    auto ck = safetensors_checkpoint::open(dir);
    for (const auto& [name, t] : ck.tensors()) {
      auto bytes = std::make_shared<std::vector<std::byte>>(t.data, t.data + t.bytes);
      auto kept = edit({name, t.type, t.shape, [bytes](std::vector<std::byte>& b) { b = *bytes; }});
      if (kept) out.push_back(*kept);
    }
  }
  write_safetensors(dir / "model.safetensors", out);
}

void set_quantization_config(const std::filesystem::path& dir, const std::string& json) {
  auto config = nlohmann::ordered_json::parse(file_text(dir / "config.json"));
  config["quantization_config"] = nlohmann::ordered_json::parse(json);
  std::ofstream(dir / "config.json") << config.dump(2);
}

void expect_load_error(const std::filesystem::path& dir, const std::string& needle) {
  try {
    load_model(dir);
    FAIL() << "loaded; expected an error containing: " << needle;
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

const std::string expert_w1 = "model.layers.0.block_sparse_moe.experts.2.w1.weight";

TEST(QuantizedModelErrors, MissingMisShapedOrMistypedScaleNamesTheTensor) {
  temp_dir tmp;
  auto dir = tmp.path() / "m";
  write_model(dir, "mixtral", "tiny", weight_format::q8);
  rewrite(dir, [](stored_tensor t) -> std::optional<stored_tensor> {
    if (t.name == expert_w1 + "_scale") return std::nullopt;
    return t;
  });
  expect_load_error(dir, "missing tensor '" + expert_w1 + "_scale'");

  write_model(dir, "mixtral", "tiny", weight_format::q8);
  rewrite(dir, [](stored_tensor t) -> std::optional<stored_tensor> {
    if (t.name == expert_w1 + "_scale") t.shape = {t.shape[1], t.shape[0]};
    return t;
  });
  expect_load_error(dir, "tensor '" + expert_w1 + "_scale': expected shape [32, 2], found [2, 32]");

  write_model(dir, "mixtral", "tiny", weight_format::q8);
  rewrite(dir, [](stored_tensor t) -> std::optional<stored_tensor> {
    if (t.name == expert_w1 + "_scale") t.type = kernels::dtype::bf16;
    return t;
  });
  expect_load_error(dir, "tensor '" + expert_w1 + "_scale': expected F16, found BF16");
}

TEST(QuantizedModelErrors, QuantizedTensorsNeedTheirMethodInConfig) {
  temp_dir tmp;
  auto dir = tmp.path() / "m";
  write_model(dir, "mixtral", "tiny", weight_format::q4);
  set_quantization_config(dir, R"({"quant_method": "gptq", "bits": 4})");
  expect_load_error(dir, "quantization_config: field 'quant_method': unsupported 'gptq'");
  set_quantization_config(dir, R"({"quant_method": "fp8", "fmt": "e4m3"})");
  expect_load_error(dir,
                    "' is U8 (q4) but config.json's quantization_config does not say "
                    "quant_method xmesh");
  set_quantization_config(dir, R"({"quant_method": "fp8", "fmt": "e5m2"})");
  expect_load_error(dir, "field 'fmt': unsupported fp8 format \"e5m2\"");
  set_quantization_config(dir, R"({"quant_method": "fp8", "weight_block_size": [64, 64]})");
  expect_load_error(dir, "field 'weight_block_size': unsupported block size");
  set_quantization_config(dir, R"({"quant_method": "xmesh", "group_size": 64})");
  expect_load_error(dir, "field 'group_size': unsupported 64");
}

TEST(QuantizedModelErrors, Fp8BlockThatDoesNotDivideTheMatrixNamesIt) {
  temp_dir tmp;
  auto dir = tmp.path() / "m";
  write_model(dir, "mixtral", "tiny", std::nullopt);  // tiny: [32, 64] experts
  rewrite(dir, [](stored_tensor t) -> std::optional<stored_tensor> {
    if (t.name == expert_w1) {
      t.type = kernels::dtype::f8_e4m3;
      t.fill = [](std::vector<std::byte>& b) { std::fill(b.begin(), b.end(), std::byte{0x38}); };
    }
    return t;
  });
  set_quantization_config(dir, R"({"quant_method": "fp8", "fmt": "e4m3"})");
  expect_load_error(dir, "tensor '" + expert_w1 +
                             "': the 128 x 128 scale block does not divide its shape [32, 64]");
}

}  // namespace
}  // namespace xmesh::model
