#include "model/resident_expert.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <new>
#include <thread>

namespace xmesh::model {

std::vector<std::span<const std::byte>> regions_of(const kernels::expert_weights& w) {
  std::vector<std::span<const std::byte>> out;
  for (const auto* m : {&w.gate, &w.up, &w.down}) {
    out.emplace_back(static_cast<const std::byte*>(m->data), static_cast<size_t>(m->data_bytes()));
    if (m->scale_bytes() > 0)
      out.emplace_back(static_cast<const std::byte*>(m->scales),
                       static_cast<size_t>(m->scale_bytes()));
  }
  return out;
}

std::shared_ptr<resident_weights> make_resident(const kernels::expert_weights& layout,
                                                const std::vector<const std::byte*>& sources,
                                                int64_t bytes_per_s) {
  auto regions = regions_of(layout);
  auto r = std::make_shared<resident_weights>();
  r->bytes = layout.bytes();
  int64_t capacity = 0;
  for (auto region : regions) capacity += (static_cast<int64_t>(region.size()) + 63) / 64 * 64;
  auto* base = static_cast<std::byte*>(std::aligned_alloc(64, capacity + 64));
  if (base == nullptr) throw std::bad_alloc();
  r->storage.reset(base);
  auto start = std::chrono::steady_clock::now();
  int64_t done = 0;
  std::byte* at = base;
  std::vector<std::byte*> copies;
  for (size_t i = 0; i < regions.size(); ++i) {
    auto size = static_cast<int64_t>(regions[i].size());
    for (int64_t off = 0; off < size; off += int64_t{1} << 20) {
      int64_t n = std::min<int64_t>(int64_t{1} << 20, size - off);
      std::memcpy(at + off, sources[i] + off, n);
      done += n;
      if (bytes_per_s > 0)
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(double(done) / double(bytes_per_s))));
    }
    copies.push_back(at);
    at += (size + 63) / 64 * 64;
  }
  r->weights = layout;
  size_t i = 0;
  for (auto* m : {&r->weights.gate, &r->weights.up, &r->weights.down}) {
    m->data = copies[i++];
    if (m->scale_bytes() > 0) m->scales = copies[i++];
  }
  return r;
}

std::shared_ptr<resident_weights> copy_expert(const kernels::expert_weights& weights,
                                              int64_t bytes_per_s) {
  std::vector<const std::byte*> sources;
  for (auto region : regions_of(weights)) sources.push_back(region.data());
  return make_resident(weights, sources, bytes_per_s);
}

void release_source_pages(const void* data, int64_t size) {
  static const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  auto begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  auto end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(size)) / page * page;
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace xmesh::model
