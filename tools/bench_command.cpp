// xmesh bench: measured benchmarks that print JSON (decode throughput against the roofline).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "kernels/memory_bandwidth.hpp"
#include "model/expert_store.hpp"
#include "model/generator.hpp"
#include "model/tokenizer/tokenizer.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"
#include "tools/local_engine.hpp"
#include "tools/text_file.hpp"

namespace xmesh::tools {

namespace {

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

constexpr int rounds_count = 5;

int bench_decode(int argc, char** argv) {
  flags f("bench decode", "--model DIR [--threads N] [--prompt-tokens P] [--new-tokens N] [--json]",
          {{"--model", true, "model directory"},
           {"--threads", true, "compute threads (default: all cores)"},
           {"--prompt-tokens", true, "prompt length for the prefill measurement (default 64)"},
           {"--new-tokens", true, "tokens to decode (default 64)"},
           {"--json", false, "print JSON (the default output is JSON too, indented)"}},
          argc, argv);
  auto threads = f.integer("--threads", std::max(1u, std::thread::hardware_concurrency()));
  auto prompt_len = f.integer("--prompt-tokens", 64), new_tokens = f.integer("--new-tokens", 64);
  if (threads < 1 || prompt_len < 1 || new_tokens < 2)
    throw usage_error("counts must be positive (--new-tokens >= 2)");
  auto m = model::load_model(f.str("--model"));
  kernels::thread_pool pool(static_cast<int>(threads));

  model::local_expert_backend experts(m.weights, pool);
  model::transformer net(m.config, m.weights, pool, experts);
  std::vector<int32_t> prompt;
  for (int64_t i = 0; i < prompt_len; ++i)
    prompt.push_back(static_cast<int32_t>((i * 7919 + 17) % m.config.vocab));
  model::generation_options o;
  o.max_new_tokens = new_tokens;
  o.stop_at_eos = false;

  // A shared machine's memory bandwidth drifts (seen here: 35 to 70 GB/s within minutes), so each
  // round measures the bandwidth (streaming every weight, which also makes them resident) right
  // before its decode run, and the fraction compares the two; the report takes the median round.
  const auto regions = m.weights.checkpoint.data_regions();
  const int64_t per_token = m.weights.bytes_read_per_token(m.config);
  struct round {
    double bandwidth, prefill_tps, decode_tps, fraction;
  };
  std::vector<round> rounds;
  for (int i = 0; i < rounds_count; ++i) {
    double bandwidth = kernels::measure_read_bandwidth(regions, 3, pool);
    auto r = model::generate(net, prompt, o);
    double decode_tps = static_cast<double>(r.decode_steps) / r.decode_seconds;
    rounds.push_back({bandwidth, static_cast<double>(prompt_len) / r.prefill_seconds, decode_tps,
                      decode_tps * static_cast<double>(per_token) / bandwidth});
  }
  const int64_t rss = peak_rss_bytes();  // before the plain buffer below
  // The same read over plain anonymous memory (1 GiB, touched first): what a STREAM-like read test
  // reaches on this machine, so the report shows how close the weights' measurement comes.
  std::vector<std::byte> plain(std::size_t{1} << 30, std::byte{1});
  const std::span<const std::byte> plain_region(plain);
  const double plain_bandwidth = kernels::measure_read_bandwidth({&plain_region, 1}, 3, pool);
  plain = {};
  std::sort(rounds.begin(), rounds.end(),
            [](const round& a, const round& b) { return a.fraction < b.fraction; });
  const round& mid = rounds[rounds.size() / 2];
  nlohmann::json per_round = nlohmann::json::array();
  for (const auto& r : rounds)
    per_round.push_back({{"memory_read_bandwidth_bytes_per_s", r.bandwidth},
                         {"decode_tokens_per_s", r.decode_tps},
                         {"roofline_fraction", r.fraction}});
  const int64_t weight_bytes = m.weights.total_bytes();
  nlohmann::json j = {
      {"benchmark", "decode"},
      {"model", f.str("--model")},
      {"architecture", m.config.architecture},
      {"threads", threads},
      {"isa", kernels::matmul_isa()},
      {"prompt_tokens", prompt_len},
      {"prefill_tokens_per_s", mid.prefill_tps},
      {"decode_tokens", new_tokens - 1},
      {"decode_tokens_per_s", mid.decode_tps},
      {"memory_read_bandwidth_bytes_per_s", mid.bandwidth},
      {"plain_memory_read_bandwidth_bytes_per_s", plain_bandwidth},
      {"weight_bytes_read_per_token", per_token},
      {"roofline_tokens_per_s", mid.bandwidth / static_cast<double>(per_token)},
      {"roofline_fraction", mid.fraction},
      {"rounds", per_round},
      {"weight_bytes", weight_bytes},
      {"peak_rss_bytes", rss},
      {"peak_rss_over_weights", static_cast<double>(rss) / static_cast<double>(weight_bytes)}};
  std::printf("%s\n", j.dump(f.has("--json") ? -1 : 2).c_str());
  return 0;
}

// Decode with an expert store over an emulated slow tier, and optionally a routing policy: the
// speed an edge node gets, and what the policy saves (docs/edge-policies.md).
int bench_edge(int argc, char** argv) {
  flags f("bench edge",
          "--model DIR --prompt-file TEXT --expert-store SPEC [--routing-policy SPEC] "
          "[--prompt-tokens P] [--new-tokens N] [--threads N] [--json]",
          {{"--model", true, "model directory (with tokenizer.json)"},
           {"--prompt-file", true,
            "UTF-8 text: its first tokens are the prompt, the next ones the decoded tokens"},
           {"--expert-store", true,
            "e.g. cache_fraction=0.25,cache=activation,rate=100MB[,fallback=Q4DIR]"},
           {"--routing-policy", true, "e.g. cache_aware=prior,prior=0.5 (same cache settings)"},
           {"--prompt-tokens", true, "prompt length (default 64)"},
           {"--new-tokens", true, "tokens to decode (default 64)"},
           {"--threads", true, "compute threads (default 2)"},
           {"--json", false, "print JSON"}},
          argc, argv);
  auto threads = f.integer("--threads", 2), prompt_len = f.integer("--prompt-tokens", 64),
       new_tokens = f.integer("--new-tokens", 64);
  if (threads < 1 || prompt_len < 1 || new_tokens < 2)
    throw usage_error("counts must be positive (--new-tokens >= 2)");
  const std::filesystem::path dir = f.str("--model");
  auto m = model::load_model(dir);
  auto ids = tokenizer::tokenizer::load(dir / "tokenizer.json")
                 .encode(read_utf8_text(f.str("--prompt-file")), false);
  if (static_cast<int64_t>(ids.size()) < prompt_len + new_tokens)
    throw std::runtime_error(f.str("--prompt-file") +
                             ": fewer than --prompt-tokens + --new-tokens tokens");
  kernels::thread_pool pool(static_cast<int>(threads));
  local_engine engine(m, pool, f.str("--expert-store"), f.opt("--routing-policy").value_or(""));
  auto& net = engine.net();
  auto& store = *engine.store();
  // Decode steps fed the text's own next tokens (teacher forcing): routing follows real text,
  // not a model's greedy loops, whose repeats would hit the cache every time.
  model::kv_cache cache(m.config, prompt_len + new_tokens);
  std::vector<float> logits;
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  net.forward(std::span(ids).first(prompt_len), cache, model::logits_for::last, logits);
  auto t1 = clock::now();
  const int64_t prefill_misses = store.misses;
  for (int64_t i = 0; i < new_tokens; ++i)
    net.forward(std::span(ids).subspan(prompt_len + i, 1), cache, model::logits_for::last, logits);
  const double decode_s = std::chrono::duration<double>(clock::now() - t1).count();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double lookups = static_cast<double>(store.hits + store.misses);
  nlohmann::json j = {
      {"benchmark", "edge"},
      {"model", dir.string()},
      {"expert_store", f.str("--expert-store")},
      {"routing_policy", net.routing_policy().text()},
      {"threads", threads},
      {"prompt_tokens", prompt_len},
      {"prefill_tokens_per_s", static_cast<double>(prompt_len) / prefill_s},
      {"decode_tokens", new_tokens},
      {"decode_tokens_per_s", static_cast<double>(new_tokens) / decode_s},
      {"decode_misses_per_token",
       static_cast<double>(store.misses - prefill_misses) / static_cast<double>(new_tokens)},
      {"hit_rate", lookups > 0 ? static_cast<double>(store.hits) / lookups : 0.0},
      {"misses", store.misses.load()},
      {"bytes_loaded", store.bytes_loaded.load()},
      {"stall_seconds", store.stall_seconds.load()},
      {"fallbacks", store.fallbacks.load()},
      {"corrupt_reads", store.corrupt_reads.load()},
      {"prefetch_precision", store.prefetch_predicted > 0
                                 ? double(store.prefetch_hits) / double(store.prefetch_predicted)
                                 : 0.0},
      {"prefetch_recall",
       store.prefetch_used > 0 ? double(store.prefetch_hits) / double(store.prefetch_used) : 0.0}};
  std::printf("%s\n", j.dump(f.has("--json") ? -1 : 2).c_str());
  return 0;
}

}  // namespace

int bench_main(int argc, char** argv) {
  if (argc >= 1 && std::strcmp(argv[0], "decode") == 0) return bench_decode(argc - 1, argv + 1);
  if (argc >= 1 && std::strcmp(argv[0], "edge") == 0) return bench_edge(argc - 1, argv + 1);
  if (argc >= 1 && std::strcmp(argv[0], "transport") == 0)
    return bench_transport_main(argc - 1, argv + 1);
  if (argc >= 1 && (std::strcmp(argv[0], "--help") == 0 || std::strcmp(argv[0], "-h") == 0)) {
    std::puts(
        "usage: xmesh bench decode --model DIR [--threads N] [--json]\n"
        "       xmesh bench edge --model DIR --prompt-file TEXT --expert-store SPEC [...]\n"
        "       xmesh bench transport --transport ucx|zmq [--sizes ...] [--json]");
    return 0;
  }
  throw usage_error("expected a benchmark name: decode, edge or transport");
}

}  // namespace xmesh::tools
