// Runs the built `xmesh` binary (env XMESH_BIN) and captures its exit status and output.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/paths.hpp"
#include "tests/support/temp_dir.hpp"

namespace xmesh::testing_support {

struct process_result {
  int status = -1;
  std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `$XMESH_BIN args...`; returns the exit status (128 + signal when killed) and both streams.
inline process_result run_xmesh(const std::vector<std::string>& args) {
  temp_dir d;
  std::string cmd = shell_quote(xmesh_bin().string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  cmd += " >" + shell_quote((d.path() / "out").string()) + " 2>" +
         shell_quote((d.path() / "err").string());
  int raw = std::system(cmd.c_str());
  process_result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = read_text(d.path() / "out");
  r.err = read_text(d.path() / "err");
  return r;
}

}  // namespace xmesh::testing_support
