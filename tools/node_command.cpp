// xmesh node: runs one node of a cluster until SIGINT or SIGTERM.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "actors/node.hpp"
#include "actors/system.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int node_main(int argc, char** argv) {
  flags f(
      "node",
      "--cluster FILE --name NAME | --join HOST:PORT --name NAME --model DIR --security DIR|none "
      "...",
      {{"--cluster", true, "cluster file (YAML)"},
       {"--name", true, "this node's name (in the cluster file, or a new one with --join)"},
       {"--join", true, "join the running cluster whose coordinator listens on HOST:PORT"},
       {"--model", true, "with --join: model directory (must be the cluster's model)"},
       {"--security", true,
        "with --join: the cluster's keys folder (xmesh cluster keygen --node NAME adds this "
        "node's), or none"},
       {"--transport", true, "with --join: the cluster's transport (zmq, ucx; default zmq)"},
       {"--host", true, "with --join: this node's address (default 127.0.0.1)"},
       {"--data-port", true, "with --join: this node's data-plane port"},
       {"--memory-budget", true, "with --join: bytes of experts it may hold (e.g. 2GiB)"},
       {"--threads", true, "with --join: compute threads (default 1)"}},
      argc, argv);
  auto name = f.str("--name");
  if (f.has("--join") == f.has("--cluster"))
    throw usage_error("give exactly one of --cluster and --join");
  actors::cluster_config cluster;
  if (f.has("--join")) {
    for (const char* needed : {"--model", "--data-port", "--security"})
      if (!f.has(needed)) throw usage_error(std::string("--join needs ") + needed);
    actors::join_request j{f.str("--model"), f.opt("--transport").value_or("zmq"), f.str("--join"),
                           name};
    j.host = f.opt("--host").value_or(j.host);
    j.data_port = f.integer("--data-port");
    j.memory_budget = f.opt("--memory-budget").value_or("");
    j.threads = f.integer("--threads", 1);
    j.security = f.str("--security");
    cluster = actors::joining_cluster(j);
  } else {
    cluster = actors::load_cluster(f.str("--cluster"));
  }
  const auto& self = cluster.node(name);
  // Block the stop signals before any thread starts, then wait for one of them here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  // A stop signal during start-up (e.g. while the coordinator cannot be reached yet) ends the
  // process at once; afterwards it stops the node in order.
  std::atomic<bool> started{false};
  auto signalled = std::make_shared<std::promise<int>>();
  auto stop_signal = signalled->get_future();
  auto once = std::make_shared<std::once_flag>();
  auto stop_with = [signalled, once](int sig) {
    std::call_once(*once, [&] { signalled->set_value(sig); });
  };
  std::thread([stop, stop_with, &started, name] {
    int sig = 0;
    sigwait(&stop, &sig);
    if (!started) {
      std::fprintf(stderr, "xmesh node %s: stopped during start-up (signal %d)\n", name.c_str(),
                   sig);
      std::_Exit(1);
    }
    stop_with(sig);
  }).detach();
  if (cluster.security.explicit_none)
    std::fprintf(stderr,
                 "xmesh node %s: warning: security: none: any process that reaches this node's "
                 "ports can send it control messages and frames (a trusted lab only)\n",
                 name.c_str());
  actors::actor_runtime rt(self.threads);  // one CAF worker per compute thread (at least 2)
  {
    actors::node_runtime node(*rt.system, cluster, name);
    node.on_stop([stop_with] { stop_with(0); });  // drained: the coordinator stops the node
    node.start();
    started = true;
    std::printf("xmesh node %s: ready (control %s:%u, data %s)\n", name.c_str(), self.host.c_str(),
                self.control_port, self.data_address(cluster.transport).c_str());
    std::fflush(stdout);
    int sig = stop_signal.get();
    if (sig != 0)
      std::printf("xmesh node %s: stopping (signal %d)\n", name.c_str(), sig);
    else
      std::printf("xmesh node %s: stopping (drained)\n", name.c_str());
  }
  rt.system->middleman().stop();  // NOTE: 0.17 keeps the published port otherwise until exit
  std::fflush(stdout);
  std::_Exit(0);  // CAF 0.17's shutdown can wait on remote peers; the node's work is done
}

}  // namespace xmesh::tools
