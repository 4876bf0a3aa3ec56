// xmesh generate: runs a prompt (text or token ids) through a model and prints what it generated.
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "model/generator.hpp"
#include "model/npy.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

namespace {

std::vector<flag_spec> generate_flags() {
  return {{"--model", true, "model directory (HF layout)"},
          {"--prompt", true, "prompt text (needs the model's tokenizer.json)"},
          {"--tokens", true, "prompt as comma-separated token ids (no tokenizer needed)"},
          {"--max-new-tokens", true, "tokens to generate (default 16; 0: only process the prompt)"},
          {"--temperature", true, "sampling temperature (default 0: greedy)"},
          {"--top-k", true, "keep the k most likely tokens (default 0: all)"},
          {"--top-p", true, "nucleus sampling mass (default 1: off)"},
          {"--seed", true, "sampling seed (default 0)"},
          {"--threads", true, "compute threads (default: all cores)"},
          {"--ignore-eos", false, "keep generating after an end-of-sequence token"},
          {"--logits-out", true, "write float32 .npy logits [positions, vocab]"},
          {"--json", false, "print the result as JSON"}};
}

model::generation_options read_options(const flags& f) {
  model::generation_options o;
  o.max_new_tokens = f.integer("--max-new-tokens", 16);
  if (o.max_new_tokens < 0) throw usage_error("--max-new-tokens: must be >= 0");
  o.sampling.temperature = f.real("--temperature", 0.0);
  o.sampling.top_k = f.integer("--top-k", 0);
  o.sampling.top_p = f.real("--top-p", 1.0);
  o.sampling.seed = static_cast<uint64_t>(f.integer("--seed", 0));
  if (o.sampling.temperature < 0) throw usage_error("--temperature: must be >= 0");
  if (o.sampling.top_k < 0) throw usage_error("--top-k: must be >= 0");
  if (o.sampling.top_p <= 0 || o.sampling.top_p > 1) throw usage_error("--top-p: must be in (0, 1]");
  o.keep_all_logits = f.has("--logits-out");
  o.stop_at_eos = !f.has("--ignore-eos");
  return o;
}

std::vector<int32_t> to_ids(const std::vector<int64_t>& v) {
  std::vector<int32_t> out;
  for (auto x : v) {
    if (x < 0 || x > INT32_MAX) throw usage_error("--tokens: id " + std::to_string(x) + " out of range");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

}  // namespace

int generate_main(int argc, char** argv) {
  flags f("generate", "--model DIR (--prompt TEXT | --tokens 1,2,3) [--max-new-tokens N] ...",
          generate_flags(), argc, argv);
  if (f.help_requested()) {
    std::fputs(f.usage().c_str(), stdout);
    return 0;
  }
  if (f.has("--prompt") == f.has("--tokens")) throw usage_error("give exactly one of --prompt and --tokens");
  auto options = read_options(f);
  auto threads = f.integer("--threads", std::max(1u, std::thread::hardware_concurrency()));
  if (threads < 1 || threads > 256) throw usage_error("--threads: must be in [1, 256]");
  std::string dir = f.str("--model");

  auto m = model::load_model(dir);
  std::optional<tokenizer::tokenizer> tok;
  std::vector<int32_t> prompt;
  if (auto text = f.opt("--prompt")) {
    tok = tokenizer::tokenizer::load(std::filesystem::path(dir) / "tokenizer.json");
    prompt = tok->encode(*text, tok->add_bos());
  } else {
    prompt = to_ids(f.integers("--tokens"));
  }
  kernels::thread_pool pool(static_cast<int>(threads));
  model::local_expert_backend experts(m.weights, pool);
  model::transformer net(m.config, m.weights, pool, experts);
  auto r = model::generate(net, prompt, options);

  if (auto path = f.opt("--logits-out")) model::write_npy(*path, r.logits, r.positions, m.config.vocab);
  std::string text = tok ? tok->decode(r.generated) : "";
  double prefill_tps = static_cast<double>(prompt.size()) / std::max(r.prefill_seconds, 1e-9);
  double decode_tps = static_cast<double>(r.decode_steps) / std::max(r.decode_seconds, 1e-9);
  if (f.has("--json")) {
    nlohmann::json j = {{"prompt_tokens", prompt}, {"tokens", r.generated}, {"positions", r.positions},
                        {"prefill_tokens_per_s", prefill_tps}, {"decode_tokens_per_s", decode_tps}};
    if (tok) j["text"] = text;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (tok) {
    std::printf("%s\n", text.c_str());
  } else {
    std::string ids;
    for (auto id : r.generated) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    std::printf("%s\n", ids.c_str());
  }
  return 0;
}

}  // namespace xmesh::tools
