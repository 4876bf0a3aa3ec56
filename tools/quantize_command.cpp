// xmesh quantize: writes a model whose linear weights are q8, q4 or fp8 (docs/quantization.md).
#include <cstdio>

#include "model/quantize.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int quantize_main(int argc, char** argv) {
  flags f("quantize", "--model DIR --out DIR --dtype q8|q4|fp8 [--experts-only]",
          {{"--model", true, "model directory to read (f32, bf16 or f16 weights)"},
           {"--out", true, "model directory to write"},
           {"--dtype", true,
            "q8 or q4 (one f16 scale per 32 weights of a row), or fp8 (e4m3, one f32 scale per "
            "128 x 128 block, as DeepSeek-V3 and Qwen3 FP8 publish)"},
           {"--experts-only", false, "quantize only the routed experts"}},
          argc, argv);
  model::quantize_options o;
  try {
    o.format = model::parse_quant_format(f.str("--dtype"));
  } catch (const std::exception& e) {
    throw usage_error(std::string("--dtype: ") + e.what());
  }
  o.experts_only = f.has("--experts-only");
  auto r = model::quantize_model(f.str("--model"), f.str("--out"), o);
  std::printf(
      "quantized %lld tensors to %s (kept %lld as they were): %.1f MB -> %.1f MB, wrote %s\n",
      static_cast<long long>(r.quantized), std::string(kernels::format_name(o.format)).c_str(),
      static_cast<long long>(r.kept), r.bytes_before / 1e6, r.bytes_after / 1e6,
      f.str("--out").c_str());
  return 0;
}

}  // namespace xmesh::tools
