// The `xmesh` command line: picks the sub-command; each one parses its flags and calls the
// libraries.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace {

struct command {
  const char* name;
  int (*main)(int, char**);
  const char* what;
};

constexpr command commands[] = {
    {"gen-model", xmesh::tools::gen_model_main, "write a model directory with random weights"},
    {"quantize", xmesh::tools::quantize_main, "write a q8, q4 or fp8 copy of a model"},
    {"eval", xmesh::tools::eval_main, "perplexity on a text file (and routing statistics)"},
    {"generate", xmesh::tools::generate_main, "run a prompt through a model"},
    {"bench", xmesh::tools::bench_main, "benchmarks (bench decode ...)"},
    {"plan", xmesh::tools::plan_main, "offline expert placement"},
    {"tokenize", xmesh::tools::tokenize_main, "encode or decode with a tokenizer.json"},
    {"node", xmesh::tools::node_main, "run one node of a cluster"},
    {"trial", xmesh::tools::trial_main,
     "edge trials over emulated links (--spec TRIAL.yaml --out DIR; root)"},
    {"prometheus-config", xmesh::tools::prometheus_config_main,
     "a Prometheus configuration that scrapes a cluster's nodes"},
    {"cluster", xmesh::tools::cluster_main,
     "cluster nodes, status, live placement, rebalance and expert moves"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: xmesh <command> [flags]   (xmesh <command> --help)\n");
  for (const auto& c : commands) std::fprintf(out, "  %-10s %s\n", c.name, c.what);
}

// Frames (up to tens of MiB) are allocated and freed once per message. glibc would mmap each one
// over 128 KiB to 32 MiB afresh and fault its pages in again (on these VMs 1 MiB of faults costs
// about as much as sending it); serving them from the heap, and keeping up to 256 MiB of freed
// heap instead of returning it, makes every later frame reuse warm memory.
void keep_frame_memory_warm() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  keep_frame_memory_warm();
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "--help" || name == "-h") {
    print_usage(stdout);
    return 0;
  }
  for (const auto& c : commands) {
    if (name != c.name) continue;
    try {
      return c.main(argc - 2, argv + 2);
    } catch (const xmesh::tools::help_request& h) {
      std::fputs(h.usage.c_str(), stdout);
      return 0;
    } catch (const xmesh::tools::usage_error& e) {
      std::fprintf(stderr, "xmesh %s: error: %s\n", c.name, e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "xmesh %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "xmesh: error: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
