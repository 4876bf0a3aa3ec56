// Writes the demo byte-level BPE tokenizer used by synthetic models.
#include <stdexcept>

#include "model/tokenizer/tokenizer.hpp"

namespace xmesh::tokenizer {

void write_demo_tokenizer(const std::filesystem::path&, int32_t) {
  throw std::runtime_error("write_demo_tokenizer: not implemented yet");
}

}  // namespace xmesh::tokenizer
