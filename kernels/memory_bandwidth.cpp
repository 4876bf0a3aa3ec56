#include "kernels/memory_bandwidth.hpp"

#include <chrono>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/matmul.hpp"

namespace xmesh::kernels {

namespace cpu {
uint64_t stream_read_avx512(const std::byte* p, int64_t size);
uint64_t stream_read_avx2(const std::byte* p, int64_t size);
}  // namespace cpu

namespace {

constexpr int64_t chunk_bytes = 1 << 20;

struct chunk {
  const std::byte* data;
  int64_t size;
};

uint64_t read_chunk(const chunk& c) {
  // The same vector width the matmul kernels load with.
  const std::string_view isa = matmul_isa();
  if (isa == "avx512") return cpu::stream_read_avx512(c.data, c.size);
  if (isa == "avx2") return cpu::stream_read_avx2(c.data, c.size);
  uint64_t acc[8] = {};
  int64_t words = c.size / 8;
  const std::byte* p = c.data;
  int64_t i = 0;
  for (; i + 8 <= words; i += 8)
    for (int l = 0; l < 8; ++l) {
      uint64_t v;
      std::memcpy(&v, p + (i + l) * 8, 8);
      acc[l] ^= v;
    }
  return acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
}

}  // namespace

double measure_read_bandwidth(std::span<const std::span<const std::byte>> regions, int passes,
                              thread_pool& pool) {
  std::vector<chunk> chunks;
  int64_t total = 0;
  for (auto r : regions)
    for (size_t off = 0; off < r.size(); off += chunk_bytes) {
      int64_t size = std::min<int64_t>(chunk_bytes, static_cast<int64_t>(r.size() - off));
      chunks.push_back({r.data() + off, size});
      total += size;
    }
  double best = 0.0;
  std::vector<uint64_t> sink(pool.num_threads() * 8);
  for (int pass = 0; pass < passes; ++pass) {
    auto start = std::chrono::steady_clock::now();
    pool.parallel_for(static_cast<int64_t>(chunks.size()), [&](int64_t b, int64_t e) {
      uint64_t x = 0;
      for (int64_t i = b; i < e; ++i) x ^= read_chunk(chunks[i]);
      sink[(b * pool.num_threads() / static_cast<int64_t>(chunks.size())) * 8] ^= x;
    });
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0) best = std::max(best, static_cast<double>(total) / seconds);
  }
  volatile uint64_t keep = sink[0];
  (void)keep;
  return best;
}

}  // namespace xmesh::kernels
