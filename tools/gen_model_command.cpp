// xmesh gen-model: writes a model directory in HF layout with random weights.
#include <cstdio>

#include "model/synthetic.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int gen_model_main(int argc, char** argv) {
  flags f("gen-model",
          "--family F --preset P --seed N --out DIR [--dtype f32|bf16|f16|q8|q4|fp8] "
          "[--tokenizer FILE] "
          "[--expert-skew S]",
          {{"--family", true, "mixtral, qwen2_moe, qwen3_moe or olmoe"},
           {"--preset", true,
            "tiny (< 5 MB), small or bench (hidden 1024, 12 layers, 64 experts top-8)"},
           {"--seed", true, "random seed (default 0)"},
           {"--out", true, "output directory"},
           {"--dtype", true,
            "weight type: f32 (default), bf16 or f16; q8, q4 or fp8 quantize the bf16 model "
            "(what xmesh quantize writes from it)"},
           {"--tokenizer", true, "copy this tokenizer.json instead of writing the demo tokenizer"},
           {"--expert-skew", true,
            "expert popularity roughly Zipf(S) on ordinary inputs (default 0: uniform)"}},
          argc, argv);
  model::synthetic_options o;
  o.family = f.str("--family");
  o.preset = f.str("--preset");
  o.seed = static_cast<uint64_t>(f.integer("--seed", 0));
  auto type = f.opt("--dtype").value_or("f32");
  if (type == "f32")
    o.type = kernels::dtype::f32;
  else if (type == "bf16")
    o.type = kernels::dtype::bf16;
  else if (type == "f16")
    o.type = kernels::dtype::f16;
  else if (type == "q8" || type == "q4" || type == "fp8") {
    o.type = kernels::dtype::bf16;
    o.quant = model::quantize_options{model::parse_quant_format(type)};
  } else
    throw usage_error("--dtype: expected f32, bf16, f16, q8, q4 or fp8, got '" + type + "'");
  if (auto t = f.opt("--tokenizer")) o.tokenizer = *t;
  o.expert_skew = f.real("--expert-skew", 0.0);
  if (!(o.expert_skew >= 0 && o.expert_skew <= 8))
    throw usage_error("--expert-skew: expected a number in [0, 8]");
  std::string out = f.str("--out");
  model::write_synthetic_model(out, o);
  std::printf("wrote %s model (%s, %s) to %s\n", o.family.c_str(), o.preset.c_str(), type.c_str(),
              out.c_str());
  return 0;
}

}  // namespace xmesh::tools
