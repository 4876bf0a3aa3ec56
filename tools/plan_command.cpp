// `xmesh plan`: offline expert placement. Reads per-(layer, expert) loads (and optionally the
// current placement), plans replicas over the hosts, writes the placement and reports balance.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "placement/placement_json.hpp"
#include "placement/planner.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

namespace {

namespace pl = xmesh::placement;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    auto cut = what.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] " prefix
    throw std::runtime_error(
        path + ": malformed JSON: " + (cut == std::string::npos ? what : what.substr(cut + 2)));
  }
}

// A per-host list flag must name every host once.
template <class T>
void check_per_host(const std::string& flag, const std::vector<T>& values, int64_t hosts) {
  if (static_cast<int64_t>(values.size()) != hosts)
    throw usage_error(flag + ": " + std::to_string(values.size()) + " values for " +
                      std::to_string(hosts) + " hosts (--hosts)");
}

int32_t to_int32(const std::string& flag, int64_t v) {
  if (v < 0 || v > INT32_MAX) throw usage_error(flag + ": out of range: " + std::to_string(v));
  return static_cast<int32_t>(v);
}

// Slots from --host-slots, or --host-memory over --expert-bytes, or R spread evenly.
std::vector<int32_t> host_slots(const flags& f, int32_t hosts, int32_t replicas) {
  if (f.has("--host-slots") && f.has("--host-memory"))
    throw usage_error("--host-slots and --host-memory: give one of them");
  std::vector<int32_t> slots;
  if (f.has("--host-slots")) {
    auto v = f.integers("--host-slots");
    check_per_host("--host-slots", v, hosts);
    for (auto s : v) slots.push_back(to_int32("--host-slots", s));
  } else if (f.has("--host-memory")) {
    if (!f.has("--expert-bytes")) throw usage_error("--host-memory: needs --expert-bytes");
    auto v = f.reals("--host-memory");
    check_per_host("--host-memory", v, hosts);
    double bytes = f.real("--expert-bytes");
    for (auto m : v) {
      if (m < 0) throw usage_error("--host-memory: must be >= 0");
      slots.push_back(static_cast<int32_t>(std::min(std::floor(m / bytes), 1e9)));
    }
  } else {
    slots = pl::even_slots(replicas, hosts);
  }
  return slots;
}

pl::plan_options options_from(const flags& f) {
  pl::plan_options o;
  auto hosts = to_int32("--hosts", f.integer("--hosts"));
  if (hosts < 1) throw usage_error("--hosts: at least 1");
  o.num_replicas = to_int32("--replicas", f.integer("--replicas"));
  if (o.num_replicas < 1) throw usage_error("--replicas: at least 1");
  if (f.has("--groups") != f.has("--nodes"))
    throw usage_error("--groups and --nodes: give both for hierarchical mode, or neither");
  if (f.has("--groups")) {
    o.num_groups = to_int32("--groups", f.integer("--groups"));
    o.num_nodes = to_int32("--nodes", f.integer("--nodes"));
    if (o.num_groups < 1 || o.num_nodes < 1) throw usage_error("--groups, --nodes: at least 1");
  }
  o.expert_bytes = f.real("--expert-bytes", 1.0);
  if (!(o.expert_bytes > 0)) throw usage_error("--expert-bytes: must be > 0");
  o.move_cost = f.real("--move-cost", o.move_cost);
  if (o.move_cost < 0) throw usage_error("--move-cost: must be >= 0");
  std::vector<double> speed(static_cast<size_t>(hosts), 1.0);
  if (f.has("--host-speed")) {
    speed = f.reals("--host-speed");
    check_per_host("--host-speed", speed, hosts);
  }
  auto slots = host_slots(f, hosts, o.num_replicas);
  for (int32_t h = 0; h < hosts; ++h)
    o.hosts.push_back({slots[static_cast<size_t>(h)], speed[static_cast<size_t>(h)]});
  return o;
}

void print_report(const pl::plan_report& r) {
  std::printf("%-6s %14s %14s %14s %14s %7s\n", "layer", "balance_before", "balance_after",
              "max_before", "max_after", "moved");
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const auto& x = r.layers[l];
    std::printf("%-6zu %14.4f %14.4f %14.2f %14.2f %7lld\n", l, x.balancedness_before,
                x.balancedness_after, x.max_time_before, x.max_time_after,
                static_cast<long long>(x.moved_replicas));
  }
  std::printf("overall balancedness %.4f -> %.4f (before: %s), moved %lld replicas, %.0f bytes\n",
              r.balancedness_before, r.balancedness_after,
              r.had_current ? "current placement" : "naive layout",
              static_cast<long long>(r.moved_replicas), r.bytes_moved);
}

}  // namespace

int plan_main(int argc, char** argv) {
  flags f("plan",
          "--load LOAD.json --hosts N --replicas R --out PLACEMENT.json [--groups G --nodes M] "
          "[--host-speed s1,s2,...] [--host-slots c1,c2,... | --host-memory b1,b2,... "
          "--expert-bytes B] [--current PLACEMENT.json] [--move-cost F] [--json]",
          {{"--load", true, "per-(layer, expert) token counts: {\"load\": [[...], ...]}"},
           {"--hosts", true, "number of hosts N"},
           {"--replicas", true, "expert slots per layer R over all hosts (R >= experts)"},
           {"--out", true, "where to write the placement JSON"},
           {"--groups", true, "hierarchical mode: expert groups G, each kept within a node"},
           {"--nodes", true, "hierarchical mode: nodes M of N/M consecutive hosts"},
           {"--host-speed", true, "relative compute speed per host (default 1 each)"},
           {"--host-slots", true, "expert slots per layer per host (default R spread evenly)"},
           {"--host-memory", true, "bytes per host for one layer's experts (slots = bytes / B)"},
           {"--expert-bytes", true, "bytes of one expert's weights B (default 1)"},
           {"--current", true, "current placement JSON: plan moves from it"},
           {"--move-cost", true,
            "peak-time gain, as a fraction of ideal layer time, a moved replica must buy "
            "(default 0.01)"},
           {"--json", false, "print the report as JSON"}},
          argc, argv);
  auto options = options_from(f);
  const auto load_path = f.str("--load");
  const auto out_path = f.str("--out");
  auto load = pl::load_from_json(read_json(load_path), load_path);
  std::optional<pl::placement> current;
  if (auto path = f.opt("--current")) current = pl::placement_from_json(read_json(*path), *path);
  auto result = pl::plan(load, options, current ? &*current : nullptr);
  std::ofstream out(out_path);
  out << pl::to_json(result.placement).dump() << "\n";
  if (!out.flush()) throw std::runtime_error("cannot write '" + out_path + "'");
  if (f.has("--json"))
    std::printf("%s\n", pl::to_json(result.report).dump(2).c_str());
  else
    print_report(result.report);
  return 0;
}

}  // namespace xmesh::tools
