#include "kernels/matmul.hpp"

#include <atomic>

#include "kernels/cpu/matmul_impl.hpp"

namespace xmesh::kernels {

namespace {

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("fma");
}

const bool have_avx512 = cpu_has_avx512();
std::atomic<bool> forced_generic{false};

bool use_avx512() { return have_avx512 && !forced_generic.load(std::memory_order_relaxed); }

// Rows per work item: a multiple of the AVX-512 tile, small enough to balance two threads.
constexpr int64_t rows_per_item = 16;

}  // namespace

void matmul_rows(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                 int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  if (use_avx512())
    cpu::matmul_rows_avx512(x, num_tokens, ldx, w, row_begin, row_end, y, ldy);
  else
    cpu::matmul_rows_generic(x, num_tokens, ldx, w, row_begin, row_end, y, ldy);
}

void matmul(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w, float* y,
            int64_t ldy, thread_pool& pool) {
  int64_t items = (w.rows + rows_per_item - 1) / rows_per_item;
  pool.parallel_for(items, [&](int64_t begin, int64_t end) {
    matmul_rows(x, num_tokens, ldx, w, begin * rows_per_item, std::min(end * rows_per_item, w.rows),
                y, ldy);
  });
}

float dot(const float* a, const float* b, int64_t n) {
  return use_avx512() ? cpu::dot_avx512(a, b, n) : cpu::dot_generic(a, b, n);
}

const char* matmul_isa() { return use_avx512() ? "avx512" : "generic"; }

void force_generic_kernels(bool on) { forced_generic.store(on); }

}  // namespace xmesh::kernels
