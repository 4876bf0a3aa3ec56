#include "kernels/matmul.hpp"

#include <atomic>
#include <stdexcept>

#include "kernels/cpu/matmul_impl.hpp"
#include "kernels/quant.hpp"

namespace xmesh::kernels {

namespace {

enum class isa : int { generic, avx2, avx512 };
constexpr const char* isa_names[] = {"generic", "avx2", "avx512"};

isa best_isa() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return isa::avx512;
  return avx2 ? isa::avx2 : isa::generic;
}

const isa best = best_isa();
std::atomic<isa> active{best};

// Rows per work item: a multiple of every tile, small enough to balance two threads.
constexpr int64_t rows_per_item = 16;

}  // namespace

std::string_view format_name(weight_format f) {
  constexpr std::string_view names[] = {"f32", "bf16", "f16", "q8", "q4", "fp8"};
  return names[static_cast<int>(f)];
}

weight_format plain_format(dtype t) {
  switch (t) {
    case dtype::f32:
      return weight_format::f32;
    case dtype::bf16:
      return weight_format::bf16;
    case dtype::f16:
      return weight_format::f16;
    default:
      throw std::invalid_argument(std::string(dtype_name(t)) + " is not a plain weight type");
  }
}

int64_t matrix_view::row_bytes() const {
  switch (format) {
    case weight_format::f32:
      return cols * 4;
    case weight_format::bf16:
    case weight_format::f16:
      return cols * 2;
    case weight_format::q8:
    case weight_format::fp8:
      return cols;
    case weight_format::q4:
      return cols / 2;
  }
  return 0;
}

int64_t matrix_view::scale_bytes() const {
  switch (format) {
    case weight_format::q8:
    case weight_format::q4:
      return rows * (cols / quant::group) * 2;
    case weight_format::fp8:
      return (rows / quant::fp8_block) * (cols / quant::fp8_block) * 4;
    default:
      return 0;
  }
}

void row_to_f32(const matrix_view& w, int64_t r, float* out) {
  quant::with_row_values(w, r, [&](auto at) {
    for (int64_t c = 0; c < w.cols; ++c) out[c] = at(c);
  });
}

void matmul_rows(const float* x, int64_t num_tokens, int64_t ldx, const matrix_view& w,
                 int64_t row_begin, int64_t row_end, float* y, int64_t ldy) {
  switch (active.load(std::memory_order_relaxed)) {
    case isa::avx512:
      return cpu::matmul_rows_avx512(x, num_tokens, ldx, w, row_begin, row_end, y, ldy);
    case isa::avx2:
      return cpu::matmul_rows_avx2(x, num_tokens, ldx, w, row_begin, row_end, y, ldy);
    case isa::generic:
      return cpu::matmul_rows_generic(x, num_tokens, ldx, w, row_begin, row_end, y, ldy);
  }
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
  switch (active.load(std::memory_order_relaxed)) {
    case isa::avx512:
      return cpu::dot_avx512(a, b, n);
    case isa::avx2:
      return cpu::dot_avx2(a, b, n);
    case isa::generic:
      break;
  }
  return cpu::dot_generic(a, b, n);
}

const char* matmul_isa() { return isa_names[int(active.load())]; }

std::vector<std::string> matmul_isas() {
  std::vector<std::string> out;
  for (int i = int(best); i >= 0; --i) out.emplace_back(isa_names[i]);
  return out;
}

void force_matmul_isa(std::string_view name) {
  for (int i = 0; i <= int(best); ++i) {
    if (name == isa_names[i]) return active.store(isa(i));
  }
  if (!name.empty())
    throw std::invalid_argument("matmul isa not available here: " + std::string(name));
  active.store(best);
}

}  // namespace xmesh::kernels
