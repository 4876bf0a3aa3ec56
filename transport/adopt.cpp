// Adopted blocks (transport.hpp, adopt_bytes): a registry from block address to its release.
#include <mutex>
#include <unordered_map>
#include <utility>

#include "transport/transport.hpp"

namespace xmesh::transport {
namespace {

struct armed_block {
  void* data = nullptr;
  size_t size = 0;
};
thread_local armed_block armed;

std::mutex registry_mutex;
std::unordered_map<void*, std::function<void()>>& registry() {
  static auto* r = new std::unordered_map<void*, std::function<void()>>;  // outlives static dtors
  return *r;
}

}  // namespace

namespace detail {

void* take_adopted(size_t size) noexcept {
  if (armed.data == nullptr || armed.size != size) return nullptr;
  return std::exchange(armed.data, nullptr);
}

bool release_adopted(void* p) noexcept {
  std::function<void()> release;
  {
    std::lock_guard lock(registry_mutex);
    auto it = registry().find(p);
    if (it == registry().end()) return false;
    release = std::move(it->second);
    registry().erase(it);
  }
  release();
  return true;
}

}  // namespace detail

bytes adopt_bytes(void* data, size_t size, std::function<void()> release) {
  if (size < detail::adopt_min_bytes) {
    bytes out = copy_bytes(data, size);
    release();
    return out;
  }
  {
    std::lock_guard lock(registry_mutex);
    registry().emplace(data, std::move(release));
  }
  armed = {data, size};
  bytes out(size);  // allocate() hands out the armed block; default-init writes nothing
  armed = {};
  if (out.data() != data) {  // not handed out (cannot happen with this allocator): copy
    std::memcpy(out.data(), data, size);
    detail::release_adopted(data);
  }
  return out;
}

}  // namespace xmesh::transport
