// xmesh node: runs one node of a cluster until SIGINT or SIGTERM.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <future>
#include <memory>
#include <thread>

#include "actors/node.hpp"
#include "actors/system.hpp"
#include "tools/commands.hpp"
#include "tools/flags.hpp"

namespace xmesh::tools {

int node_main(int argc, char** argv) {
  flags f("node", "--cluster FILE --name NAME",
          {{"--cluster", true, "cluster file (YAML)"},
           {"--name", true, "this node's name in the cluster file"}},
          argc, argv);
  auto cluster = actors::load_cluster(f.str("--cluster"));
  auto name = f.str("--name");
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
  std::thread([stop, signalled, &started, name] {
    int sig = 0;
    sigwait(&stop, &sig);
    if (!started) {
      std::fprintf(stderr, "xmesh node %s: stopped during start-up (signal %d)\n", name.c_str(),
                   sig);
      std::_Exit(1);
    }
    signalled->set_value(sig);
  }).detach();
  actors::actor_runtime rt(self.threads);  // one CAF worker per compute thread (at least 2)
  {
    actors::node_runtime node(*rt.system, cluster, name);
    node.start();
    started = true;
    std::printf("xmesh node %s: ready (control %s:%u, data %s)\n", name.c_str(), self.host.c_str(),
                self.control_port, self.data_address(cluster.transport).c_str());
    std::fflush(stdout);
    int sig = stop_signal.get();
    std::printf("xmesh node %s: stopping (signal %d)\n", name.c_str(), sig);
  }
  rt.system->middleman().stop();  // NOTE: 0.17 keeps the published port otherwise until exit
  std::fflush(stdout);
  std::_Exit(0);  // CAF 0.17's shutdown can wait on remote peers; the node's work is done
}

}  // namespace xmesh::tools
