// Runs the reference implementation (node + @lenml/tokenizers) over the corpus once per test
// process and hands the results to the tests. Missing node or npm packages fail, never skip.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

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

// NOTE: the environment wins; the compiled-in folders cover runs where ctest does not pass
// XMESH_SOURCE_DIR / XMESH_BUILD_DIR (see tests/unit/tokenizer/CMakeLists.txt).
inline std::string source_dir() { return env_or("XMESH_SOURCE_DIR", XMESH_TOK_SOURCE_DIR); }
inline std::string build_dir() { return env_or("XMESH_BUILD_DIR", XMESH_TOK_BUILD_DIR); }

/// The npm folder tests/run.sh installs the reference packages into.
inline std::filesystem::path npm_dir() { return std::filesystem::path(build_dir()) / "npm"; }

/// Runs reference.cjs for `package`; returns the parsed output, or an error message in `error`.
inline nlohmann::json run_reference(const std::string& package, std::string& error) {
  namespace fs = std::filesystem;
  fs::path src = fs::path(source_dir()) / "tests/unit/tokenizer";
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    error = "node is not installed: the tokenizer tests need it (tests/run.sh installs nodejs)";
    return {};
  }
  fs::path dir = fs::temp_directory_path() / ("xmesh_tok_ref_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path out = dir / "out.json", err = dir / "err.txt";
  std::string cmd = "node '" + (src / "reference.cjs").string() + "' '" + npm_dir().string() +
                    "' '" + package + "' '" + (src / "corpus.json").string() + "' '" +
                    out.string() + "' 2>'" + err.string() + "'";
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
