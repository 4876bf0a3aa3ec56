#include "tools/text_file.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "model/tokenizer/unicode.hpp"

namespace xmesh::tools {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_utf8_text(const std::string& path) {
  std::string text = read_file(path);
  if (text.empty()) throw std::runtime_error(path + ": empty: no text");
  if (auto at = tokenizer::invalid_utf8_at(text); at != std::string::npos)
    throw std::runtime_error(path + ": not UTF-8 text (bad byte at offset " + std::to_string(at) +
                             ")");
  return text;
}

}  // namespace xmesh::tools
