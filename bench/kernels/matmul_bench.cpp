// Matmul throughput on the bench preset's shapes: decode (1 token, bandwidth-bound) and prefill
// (64 tokens, compute-bound), per weight type. Google Benchmark; `--benchmark_format=json`.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/matmul.hpp"

namespace {

using namespace xmesh::kernels;

struct bench_case {
  dtype type;
  int64_t rows, cols, tokens;
};

// Weights stream from memory as in a real model: copies rotated over 512 MiB, beyond any cache.
void BM_Matmul(benchmark::State& s, bench_case c) {
  const int64_t matrix_bytes = c.rows * c.cols * static_cast<int64_t>(dtype_size(c.type));
  const int copies = static_cast<int>(std::max<int64_t>(2, (int64_t{512} << 20) / matrix_bytes));
  std::vector<uint8_t> w(copies * c.rows * c.cols * dtype_size(c.type), 0x3C);
  std::vector<float> x(c.tokens * c.cols, 0.5f), y(c.tokens * c.rows);
  thread_pool pool(static_cast<int>(s.range(0)));
  int i = 0;
  for (auto _ : s) {
    matrix_view m{w.data() + (i++ % copies) * c.rows * c.cols * dtype_size(c.type),
                  plain_format(c.type), c.rows, c.cols};
    matmul(x.data(), c.tokens, c.cols, m, y.data(), c.rows, pool);
    benchmark::DoNotOptimize(y.data());
  }
  s.SetBytesProcessed(s.iterations() * c.rows * c.cols * static_cast<int64_t>(dtype_size(c.type)));
  s.counters["flops"] = benchmark::Counter(2.0 * c.rows * c.cols * c.tokens * s.iterations(),
                                           benchmark::Counter::kIsRate);
  s.SetLabel(matmul_isa());
}

BENCHMARK_CAPTURE(BM_Matmul, decode_bf16_expert_up, bench_case{dtype::bf16, 512, 1024, 1})
    ->Arg(1)
    ->Arg(2);
BENCHMARK_CAPTURE(BM_Matmul, decode_bf16_attn_q, bench_case{dtype::bf16, 1024, 1024, 1})
    ->Arg(1)
    ->Arg(2);
BENCHMARK_CAPTURE(BM_Matmul, decode_f32_attn_q, bench_case{dtype::f32, 1024, 1024, 1})
    ->Arg(1)
    ->Arg(2);
BENCHMARK_CAPTURE(BM_Matmul, decode_f16_attn_q, bench_case{dtype::f16, 1024, 1024, 1})
    ->Arg(1)
    ->Arg(2);
BENCHMARK_CAPTURE(BM_Matmul, prefill64_bf16_attn_q, bench_case{dtype::bf16, 1024, 1024, 64})
    ->Arg(1)
    ->Arg(2);
BENCHMARK_CAPTURE(BM_Matmul, prefill64_f32_attn_q, bench_case{dtype::f32, 1024, 1024, 64})
    ->Arg(1)
    ->Arg(2);

}  // namespace

BENCHMARK_MAIN();
