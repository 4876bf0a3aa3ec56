// Skeleton: the real pipeline lands next.
#include "model/tokenizer/tokenizer.hpp"

#include <stdexcept>

namespace xmesh::tokenizer {

struct tokenizer_impl {};

tokenizer::tokenizer(std::unique_ptr<tokenizer_impl> impl) : impl_(std::move(impl)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

tokenizer tokenizer::load(const std::filesystem::path& p) {
  throw std::runtime_error(p.string() + ": tokenizer not implemented yet");
}
std::vector<int32_t> tokenizer::encode(std::string_view, bool) const { return {}; }
std::string tokenizer::decode(std::span<const int32_t>) const { return {}; }
std::optional<int32_t> tokenizer::bos_id() const { return std::nullopt; }
std::optional<int32_t> tokenizer::eos_id() const { return std::nullopt; }
bool tokenizer::add_bos() const { return false; }
size_t tokenizer::vocab_size() const { return 0; }

void write_demo_tokenizer(const std::filesystem::path&, int32_t) {
  throw std::runtime_error("write_demo_tokenizer: not implemented yet");
}

}  // namespace xmesh::tokenizer
