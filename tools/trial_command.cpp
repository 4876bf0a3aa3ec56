// xmesh trial: edge trials over emulated links. The runner is deploy/trial.py (it launches
// clusters with deploy/netns.sh and draws plots with matplotlib); this command finds it in the
// source tree the binary was built from and runs it with this binary.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tools/commands.hpp"

namespace xmesh::tools {

int trial_main(int argc, char** argv) {
  const std::filesystem::path runner =
      std::filesystem::path(XMESH_SOURCE_DIR) / "deploy" / "trial.py";
  if (!std::filesystem::exists(runner))
    throw std::runtime_error(runner.string() + ": not found (xmesh trial runs from a source tree)");
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // Debian's interpreter, which has the Debian packages the runner uses (yaml, matplotlib).
  const char* python = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  std::vector<std::string> args = {python, runner.string(), "--xmesh", self};
  for (int i = 0; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> c_args;
  for (auto& a : args) c_args.push_back(a.data());
  c_args.push_back(nullptr);
  execvp(python, c_args.data());
  throw std::runtime_error(std::string("cannot run python3: ") + std::strerror(errno));
}

}  // namespace xmesh::tools
