// Where tests find the built binary and the source and build folders (env overrides, else the
// paths CMake compiled in: see xmesh_add_test).
#pragma once

#include <cstdlib>
#include <filesystem>

namespace xmesh::testing_support {

inline std::filesystem::path env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::filesystem::path xmesh_bin() { return env_or("XMESH_BIN", XMESH_BIN_DEFAULT); }
inline std::filesystem::path source_dir() {
  return env_or("XMESH_SOURCE_DIR", XMESH_SOURCE_DIR_DEFAULT);
}
inline std::filesystem::path build_dir() {
  return env_or("XMESH_BUILD_DIR", XMESH_BUILD_DIR_DEFAULT);
}

}  // namespace xmesh::testing_support
