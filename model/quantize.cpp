#include "model/quantize.hpp"

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

#include "kernels/quant.hpp"
#include "model/config.hpp"
#include "model/safetensors.hpp"

namespace xmesh::model {

namespace {

using kernels::weight_format;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Codes and scales of one quantized tensor, computed when its codes are written and kept for
// its scales, which the writer asks for next.
struct encoded {
  std::vector<std::byte> codes, scales;
};

void encode(const std::vector<float>& w, int64_t rows, int64_t cols, weight_format f,
            encoded& out) {
  kernels::matrix_view shape{nullptr, f, rows, cols};
  out.codes.assign(shape.data_bytes(), std::byte{0});
  out.scales.assign(shape.scale_bytes(), std::byte{0});
  auto* s16 = reinterpret_cast<uint16_t*>(out.scales.data());
  auto* codes = reinterpret_cast<uint8_t*>(out.codes.data());
  switch (f) {
    case weight_format::q8:
      return kernels::quant::quantize_q8(w.data(), rows, cols, reinterpret_cast<int8_t*>(codes),
                                         s16);
    case weight_format::q4:
      return kernels::quant::quantize_q4(w.data(), rows, cols, codes, s16);
    case weight_format::fp8:
      return kernels::quant::quantize_fp8(w.data(), rows, cols, codes,
                                          reinterpret_cast<float*>(out.scales.data()));
    default:
      throw std::invalid_argument("not a quantized format");
  }
}

}  // namespace

weight_format parse_quant_format(const std::string& name) {
  if (name == "q8") return weight_format::q8;
  if (name == "q4") return weight_format::q4;
  if (name == "fp8") return weight_format::fp8;
  throw std::runtime_error("unknown quantized format '" + name + "' (supported: q8, q4, fp8)");
}

bool quantizes(const std::string& name, const std::vector<int64_t>& shape,
               const quantize_options& o) {
  if (shape.size() != 2 || !ends_with(name, ".weight") || name == "model.embed_tokens.weight" ||
      ends_with(name, ".gate.weight") || ends_with(name, "shared_expert_gate.weight"))
    return false;
  if (o.experts_only && name.find(".experts.") == std::string::npos) return false;
  if (o.format == weight_format::fp8)
    return shape[0] % kernels::quant::fp8_block == 0 && shape[1] % kernels::quant::fp8_block == 0;
  return shape[1] % kernels::quant::group == 0;
}

std::vector<stored_tensor> store_tensor(const tensor_spec& t, kernels::dtype plain,
                                        const quantize_options& o) {
  // Values as the `plain` checkpoint holds them: quantizing a generated model gives the same
  // bytes as quantizing its plain copy.
  auto values = [t, plain] {
    std::vector<float> v(numel(t.shape));
    t.fill(v);
    std::vector<std::byte> stored;
    store_as(v, plain, stored);
    kernels::to_f32(stored.data(), plain, v.size(), v.data());
    return v;
  };
  if (!quantizes(t.name, t.shape, o))
    return {{t.name, plain, t.shape,
             [values, plain](std::vector<std::byte>& out) { store_as(values(), plain, out); }}};
  const int64_t rows = t.shape[0], cols = t.shape[1];
  auto state = std::make_shared<encoded>();
  const auto f = o.format;
  kernels::dtype code_type = f == weight_format::q8   ? kernels::dtype::i8
                             : f == weight_format::q4 ? kernels::dtype::u8
                                                      : kernels::dtype::f8_e4m3;
  std::vector<int64_t> code_shape{rows, f == weight_format::q4 ? cols / 2 : cols};
  stored_tensor codes{t.name, code_type, code_shape,
                      [state, values, rows, cols, f](std::vector<std::byte>& out) {
                        encode(values(), rows, cols, f, *state);
                        out = std::move(state->codes);
                      }};
  stored_tensor scales;
  if (f == weight_format::fp8) {
    scales = {t.name + "_scale_inv",
              kernels::dtype::f32,
              {rows / kernels::quant::fp8_block, cols / kernels::quant::fp8_block},
              {}};
  } else {
    scales = {t.name + "_scale", kernels::dtype::f16, {rows, cols / kernels::quant::group}, {}};
  }
  scales.fill = [state](std::vector<std::byte>& out) { out = std::move(state->scales); };
  return {std::move(codes), std::move(scales)};
}

std::string quantization_config_json(const quantize_options& o) {
  nlohmann::ordered_json q;
  if (o.format == weight_format::fp8) {
    q = {{"quant_method", "fp8"},
         {"fmt", "e4m3"},
         {"activation_scheme", "dynamic"},
         {"weight_block_size", {128, 128}}};
  } else {
    q = {{"quant_method", "xmesh"},
         {"format", std::string(kernels::format_name(o.format))},
         {"bits", o.format == weight_format::q8 ? 8 : 4},
         {"group_size", kernels::quant::group},
         {"symmetric", true},
         {"scale_dtype", "float16"},
         {"modules", o.experts_only ? "routed experts" : "linear layers but router and lm inputs"},
         {"layout", "docs/quantization.md"}};
  }
  return q.dump();
}

quantize_report quantize_model(const std::filesystem::path& source,
                               const std::filesystem::path& out, const quantize_options& o) {
  namespace fs = std::filesystem;
  model_config config = load_config(source);
  if (config.quant != quant_method::none)
    throw std::runtime_error((source / "config.json").string() +
                             ": the model is already quantized (quantization_config)");
  if (fs::exists(out) && fs::equivalent(source, out))
    throw std::runtime_error(out.string() + ": --out must differ from --model");
  auto checkpoint = safetensors_checkpoint::open(source);
  quantize_report report;
  std::vector<stored_tensor> stored;
  std::vector<const tensor_info*> in_file_order;  // so quantizing keeps the source's order
  for (const auto& [name, info] : checkpoint.tensors()) in_file_order.push_back(&info);
  std::sort(in_file_order.begin(), in_file_order.end(), [](auto* a, auto* b) {
    return std::tie(a->file, a->data) < std::tie(b->file, b->data);
  });
  for (const tensor_info* t : in_file_order) {
    const auto& info = *t;
    const auto& name = info.name;
    if (kernels::dtype_size(info.type) == 1)
      throw std::runtime_error(info.file + ": tensor '" + name + "' is already 8-bit");
    tensor_spec spec{name, info.shape, [t](std::vector<float>& v) {
                       kernels::to_f32(t->data, t->type, v.size(), v.data());
                     }};
    auto parts = store_tensor(spec, info.type, o);
    (parts.size() == 2 ? report.quantized : report.kept) += 1;
    report.bytes_before += info.bytes;
    for (auto& p : parts) {
      report.bytes_after += numel(p.shape) * static_cast<int64_t>(kernels::dtype_size(p.type));
      stored.push_back(std::move(p));
    }
  }
  write_model_weights(out, stored);
  std::ifstream in(source / "config.json");
  auto json = nlohmann::ordered_json::parse(in);
  json["quantization_config"] = nlohmann::ordered_json::parse(quantization_config_json(o));
  std::ofstream(out / "config.json") << json.dump(2) << "\n";
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                           "special_tokens_map.json"})
    if (fs::exists(source / file))
      fs::copy_file(source / file, out / file, fs::copy_options::overwrite_existing);
  return report;
}

}  // namespace xmesh::model
