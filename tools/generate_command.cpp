// xmesh generate: runs a prompt (text or token ids) through a model and prints what it generated.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "actors/node.hpp"
#include "actors/system.hpp"
#include "model/generator.hpp"
#include "model/npy.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "tools/local_engine.hpp"

namespace xmesh::tools {

namespace {

std::vector<flag_spec> generate_flags() {
  return {{"--model", true, "model directory (HF layout)"},
          {"--cluster", true, "run on this running cluster (default: all roles in this process)"},
          {"--prompt", true, "prompt text (needs the model's tokenizer.json)"},
          {"--tokens", true, "prompt as comma-separated token ids (no tokenizer needed)"},
          {"--max-new-tokens", true, "tokens to generate (default 16; 0: only process the prompt)"},
          {"--temperature", true, "sampling temperature (default 0: greedy)"},
          {"--top-k", true, "keep the k most likely tokens (default 0: all)"},
          {"--top-p", true, "nucleus sampling mass (default 1: off)"},
          {"--seed", true, "sampling seed (default 0)"},
          {"--threads", true, "compute threads (default: all cores)"},
          {"--routing-policy", true,
           "route with a policy (docs/edge-policies.md; a cluster's is its file's routing: "
           "section)"},
          {"--expert-store", true,
           "compute with an expert store over an emulated slow tier, as xmesh eval does (one "
           "process only: the oracle of a cluster whose expert nodes keep a store with a "
           "fallback)"},
          {"--ignore-eos", false, "keep generating after an end-of-sequence token"},
          {"--logits-out", true, "write float32 .npy logits [positions, vocab]"},
          {"--json", false, "print the result as JSON"}};
}

actors::generate_request read_request(const flags& f) {
  actors::generate_request r;
  r.max_new_tokens = f.integer("--max-new-tokens", 16);
  if (r.max_new_tokens < 0) throw usage_error("--max-new-tokens: must be >= 0");
  r.temperature = f.real("--temperature", 0.0);
  r.top_k = f.integer("--top-k", 0);
  r.top_p = f.real("--top-p", 1.0);
  r.seed = static_cast<uint64_t>(f.integer("--seed", 0));
  if (r.temperature < 0) throw usage_error("--temperature: must be >= 0");
  if (r.top_k < 0) throw usage_error("--top-k: must be >= 0");
  if (r.top_p <= 0 || r.top_p > 1) throw usage_error("--top-p: must be in (0, 1]");
  r.keep_all_logits = f.has("--logits-out");
  r.stop_at_eos = !f.has("--ignore-eos");
  return r;
}

// Runs the request through the engine alone, with an expert store (docs/edge-policies.md).
actors::generate_reply run_with_store(const flags& f, const std::string& dir, int threads,
                                      const actors::generate_request& request) {
  auto m = model::load_model(dir);
  kernels::thread_pool pool(threads);
  local_engine engine(m, pool, f.str("--expert-store"), f.opt("--routing-policy").value_or(""));
  actors::generate_reply reply;
  actors::fill_generated(
      reply, model::generate(engine.net(), request.prompt, actors::options_of(request)));
  return reply;
}

// Runs the request on a running cluster's head, or on an embedded one-node cluster.
actors::generate_reply run_request(const flags& f, const std::string& dir, int threads,
                                   const actors::generate_request& request) {
  constexpr auto timeout = std::chrono::seconds(3600);
  if (f.has("--expert-store")) return run_with_store(f, dir, threads, request);
  if (auto file = f.opt("--cluster")) {
    // Heads in the file's order. When one dies or cannot be reached, the request is replayed on
    // the next: decoding is deterministic (greedy or seeded), so the reply is the one the first
    // head would have given.
    auto cluster = actors::load_cluster(*file);
    auto heads = cluster.with_role(actors::role::head);
    auto wait = std::min(actors::connect_timeout(), std::chrono::milliseconds(10000));
    if (heads.size() > 1) wait = std::min(wait, std::chrono::milliseconds(2000));
    for (size_t i = 0;; ++i) {
      const auto& head = *heads[i];
      try {
        auto c = actors::connect_proven(cluster, head, wait, "head");
        return actors::ask<actors::generate_reply>(*c.runtime->system, c.node, timeout,
                                                   "generation on head '" + head.name + "'",
                                                   actors::generate_atom_v, request);
      } catch (const actors::peer_lost& e) {
        if (i + 1 == heads.size()) throw;
        std::fprintf(stderr, "xmesh generate: %s; replaying on head '%s'\n", e.what(),
                     heads[i + 1]->name.c_str());
      }
    }
  }
  actors::actor_runtime rt(
      threads);  // one CAF worker per compute thread: more only oversubscribe the cores
  auto cluster = actors::embedded_cluster(dir, threads);
  cluster.routing = f.opt("--routing-policy").value_or("");
  actors::node_runtime node(*rt.system, cluster, "embedded");
  node.start();
  return actors::ask<actors::generate_reply>(*rt.system, node.actor(), timeout, "generation",
                                             actors::generate_atom_v, request);
}

std::vector<int32_t> to_ids(const std::vector<int64_t>& v) {
  std::vector<int32_t> out;
  for (auto x : v) {
    if (x < 0 || x > INT32_MAX)
      throw usage_error("--tokens: id " + std::to_string(x) + " out of range");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

}  // namespace

int generate_main(int argc, char** argv) {
  flags f("generate", "--model DIR (--prompt TEXT | --tokens 1,2,3) [--max-new-tokens N] ...",
          generate_flags(), argc, argv);
  if (f.has("--prompt") == f.has("--tokens"))
    throw usage_error("give exactly one of --prompt and --tokens");
  auto request = read_request(f);
  auto threads = f.integer("--threads", std::max(1u, std::thread::hardware_concurrency()));
  if (threads < 1 || threads > 256) throw usage_error("--threads: must be in [1, 256]");
  std::string dir = f.str("--model");

  std::optional<tokenizer::tokenizer> tok;
  if (auto text = f.opt("--prompt")) {
    tok = tokenizer::tokenizer::load(std::filesystem::path(dir) / "tokenizer.json");
    request.prompt = tok->encode(*text, tok->add_bos());
  } else {
    request.prompt = to_ids(f.integers("--tokens"));
  }
  auto config = model::load_config(dir);
  if (f.has("--cluster")) request.model = model::model_identity(dir);  // the head checks it
  if (f.has("--cluster") && f.has("--routing-policy"))
    throw usage_error("--routing-policy: a cluster routes with its file's routing: section");
  if (f.has("--cluster") && f.has("--expert-store"))
    throw usage_error(
        "--expert-store: a cluster's expert nodes keep their stores (node key store:)");
  auto r = run_request(f, dir, static_cast<int>(threads), request);
  if (!r.error.empty()) throw std::runtime_error(r.error);
  const auto& prompt = request.prompt;
  std::span<const float> logits(reinterpret_cast<const float*>(r.logits.data()),
                                r.logits.size() / sizeof(float));
  if (auto path = f.opt("--logits-out")) model::write_npy(*path, logits, r.positions, config.vocab);
  std::string text = tok ? tok->decode(r.generated) : "";
  double prefill_tps = static_cast<double>(prompt.size()) / std::max(r.prefill_seconds, 1e-9);
  double decode_tps = static_cast<double>(r.decode_steps) / std::max(r.decode_seconds, 1e-9);
  if (f.has("--json")) {
    nlohmann::json j = {
        {"prompt_tokens", prompt},
        {"tokens", r.generated},
        {"positions", r.positions},
        {"prefill_tokens_per_s", prefill_tps},
        {"decode_tokens_per_s", decode_tps},
        {"dispatch_round_trip_s", r.dispatch_seconds / std::max<int64_t>(r.dispatches, 1)},
        {"token_seconds", r.token_seconds}};
    if (tok) j["text"] = text;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (tok) {
    std::printf("%s\n", text.c_str());
  } else {
    std::string ids;
    for (auto id : r.generated) {
      if (!ids.empty()) ids += ',';
      ids += std::to_string(id);
    }
    std::printf("%s\n", ids.c_str());
  }
  return 0;
}

}  // namespace xmesh::tools
