// xmesh eval: perplexity of a model on a text file (and, with --routing, the routing statistics
// edge policies are judged against).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "actors/system.hpp"
#include "model/expert_store.hpp"
#include "model/generator.hpp"
#include "model/perplexity.hpp"
#include "model/routing_policy.hpp"
#include "model/routing_stats.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "tools/local_engine.hpp"
#include "tools/text_file.hpp"

namespace xmesh::tools {

int eval_main(int argc, char** argv) {
  flags f("eval",
          "--model DIR --file TEXT [--context N] [--stride N] [--threads N] [--routing] "
          "[--routing-policy SPEC] [--expert-store SPEC] [--cluster FILE] [--json]",
          {{"--model", true, "model directory (with tokenizer.json)"},
           {"--file", true, "UTF-8 text to score"},
           {"--context", true, "tokens of context per window (default 256)"},
           {"--stride", true, "targets scored per window after the first (default context / 2)"},
           {"--threads", true, "compute threads (default 2)"},
           {"--routing", false, "also measure expert popularity, reuse and pre-gating accuracy"},
           {"--routing-policy", true,
            "route with a policy (docs/edge-policies.md), e.g. "
            "cache_aware=max_rank,max_rank=4,cache=lru,cache_fraction=0.25,skip_below=0.1"},
           {"--cluster", true, "score through this running cluster's first head"},
           {"--expert-store", true,
            "compute from an expert store (e.g. cache_fraction=0.25,fallback=Q4DIR): with a "
            "fallback, misses compute with its low-precision copies"},
           {"--json", false, "print JSON"}},
          argc, argv);
  const auto dir = std::filesystem::path(f.str("--model"));
  const int64_t context = f.integer("--context", 256);
  const int64_t stride = f.integer("--stride", context / 2);
  const int threads = static_cast<int>(f.integer("--threads", 2));
  if (context < 2 || stride < 1 || stride > context)
    throw usage_error("--context and --stride: need 2 <= context and 1 <= stride <= context");
  if (threads < 1) throw usage_error("--threads: expected at least 1");
  const std::string text = read_utf8_text(f.str("--file"));
  auto m = model::load_model(dir);
  auto tok = tokenizer::tokenizer::load(dir / "tokenizer.json");
  // The first token is context only: the model's BOS (else EOS) stands before the text.
  std::vector<int32_t> ids;
  if (m.config.bos_token_id)
    ids.push_back(*m.config.bos_token_id);
  else if (!m.config.eos_token_ids.empty())
    ids.push_back(m.config.eos_token_ids.front());
  auto body = tok.encode(text, false);
  ids.insert(ids.end(), body.begin(), body.end());
  if (ids.size() < 2)
    throw std::runtime_error(f.str("--file") + ": fewer than two tokens to score");

  kernels::thread_pool pool(threads);
  std::optional<model::routing_stats> routing;
  if (f.has("--routing")) routing.emplace(m.config, m.weights, pool);
  model::transformer::moe_observer watch;
  if (routing)
    watch = [&](int64_t l, const float* x, int64_t n, model::expert_cache_model*) {
      routing->observe(l, x, n);
    };
  local_engine engine(m, pool, f.opt("--expert-store"), f.opt("--routing-policy").value_or(""),
                      std::move(watch));
  auto& net = engine.net();
  auto* store = engine.store();
  std::optional<actors::proven_connection> head;
  auto logits_of = model::local_window_logits(net);
  if (auto file = f.opt("--cluster")) {
    if (routing || f.has("--routing-policy") || store)
      throw usage_error(
          "--cluster: --routing and --routing-policy measure this process (a "
          "cluster routes with its file's routing: section)");
    auto cluster = actors::load_cluster(*file);
    const auto& node = *cluster.with_role(actors::role::head).front();
    head.emplace(actors::connect_proven(cluster, node, actors::connect_timeout(), "head"));
    logits_of = [&head, name = node.name,
                 identity = model::model_identity(dir)](std::span<const int32_t> inputs) {
      actors::generate_request req;
      req.prompt.assign(inputs.begin(), inputs.end());
      req.max_new_tokens = 0;
      req.keep_all_logits = true;
      req.stop_at_eos = false;
      req.model = identity;
      auto reply = actors::ask<actors::generate_reply>(
          *head->runtime->system, head->node, std::chrono::seconds(600),
          "a window on head '" + name + "'", actors::generate_atom_v, req);
      if (!reply.error.empty()) throw std::runtime_error("head '" + name + "': " + reply.error);
      std::vector<float> logits(reply.logits.size() / sizeof(float));
      std::memcpy(logits.data(), reply.logits.data(), logits.size() * sizeof(float));
      return logits;
    };
  }
  auto r = model::sequence_nll(logits_of, m.config.vocab, ids, context, stride,
                               [&](const model::score_window& w) {
                                 if (routing)
                                   routing->scored_rows(w.first - 1 - w.start, w.end - 1 - w.start);
                                 // Each window is a new sequence, for the policy's cache too.
                                 if (store) store->reset();
                               });
  const double bits = r.nll / std::log(2.0);
  nlohmann::ordered_json j = {{"model", dir.string()},
                              {"cluster", f.opt("--cluster").value_or("")},
                              {"file", f.str("--file")},
                              {"tokens", r.tokens},
                              {"bytes", text.size()},
                              {"nll_nats", r.nll},
                              {"perplexity", std::exp(r.nll / static_cast<double>(r.tokens))},
                              {"bits_per_token", bits / static_cast<double>(r.tokens)},
                              {"bits_per_byte", bits / static_cast<double>(text.size())},
                              {"context", context},
                              {"stride", stride},
                              {"routing_policy", net.routing_policy().text()}};
  if (net.routing_policy().enabled) {  // over every routed token, context re-reads included
    const auto& c = net.routing_stats();
    const double routed = static_cast<double>(c.routed.load());
    j["hit_rate"] = routed > 0 ? static_cast<double>(c.hits.load()) / routed : 0.0;
    j["experts_per_token"] =
        routed / static_cast<double>(c.routed.load() + c.skipped.load()) * m.config.top_k;
  }
  if (routing) {
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& l : routing->report())
      layers.push_back({{"layer", l.layer},
                        {"tokens", l.tokens},
                        {"zipf_exponent", l.zipf_exponent},
                        {"reuse_previous_token", l.reuse_previous},
                        {"pregate_accuracy", l.pregate_accuracy < 0
                                                 ? nlohmann::ordered_json()
                                                 : nlohmann::ordered_json(l.pregate_accuracy)},
                        {"share", l.share}});
    j["routing"] = layers;
  }
  if (store) {
    const double lookups = static_cast<double>(store->hits + store->misses);
    j["store_hit_rate"] = lookups > 0 ? static_cast<double>(store->hits) / lookups : 0.0;
    j["store_fallbacks"] = store->fallbacks.load();
  }
  if (f.has("--json")) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%lld tokens, %zu bytes: perplexity %.4f, %.4f bits/byte\n",
              static_cast<long long>(r.tokens), text.size(), j["perplexity"].get<double>(),
              j["bits_per_byte"].get<double>());
  if (routing)
    for (const auto& l : routing->report())
      std::printf(
          "layer %lld: zipf %.3f, reuse of the previous token's experts %.3f, pre-gating %s\n",
          static_cast<long long>(l.layer), l.zipf_exponent, l.reuse_previous,
          l.pregate_accuracy < 0 ? "-" : std::to_string(l.pregate_accuracy).c_str());
  return 0;
}

}  // namespace xmesh::tools
