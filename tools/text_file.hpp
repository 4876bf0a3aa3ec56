// The files commands read whole, with one clear line naming the file when they cannot.
#pragma once

#include <string>

namespace xmesh::tools {

/// The file's bytes; throws "PATH: cannot open".
std::string read_file(const std::string& path);

/// The file's text; also throws when it is empty or not UTF-8 (naming the first bad byte).
std::string read_utf8_text(const std::string& path);

}  // namespace xmesh::tools
