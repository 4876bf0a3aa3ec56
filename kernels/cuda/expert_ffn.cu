// Expert FFN on the device: one warp per (token, output row) dot product, then SwiGLU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_kernels.hpp"

namespace xmesh::kernels::cuda {

namespace {

__device__ float f16_value(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Weight (r, c) as kernels/quant.hpp decodes it (the layouts are documented there).
__device__ float load_weight(const void* w, const void* scales, weight_format f, int64_t cols,
                             int64_t r, int64_t c) {
  const int64_t i = r * cols + c;
  const auto* s16 = static_cast<const uint16_t*>(scales);
  switch (f) {
    case weight_format::f32:
      return static_cast<const float*>(w)[i];
    case weight_format::bf16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(w)[i]);
    case weight_format::f16:
      return __half2float(static_cast<const __half*>(w)[i]);
    case weight_format::q8:
      return static_cast<float>(static_cast<const int8_t*>(w)[i]) *
             f16_value(s16[r * (cols / 32) + c / 32]);
    case weight_format::q4: {
      uint8_t b = static_cast<const uint8_t*>(w)[r * cols / 2 + c / 32 * 16 + c % 16];
      int code = (c % 32 < 16 ? b & 0xF : b >> 4) - 8;
      return static_cast<float>(code) * f16_value(s16[r * (cols / 32) + c / 32]);
    }
    case weight_format::fp8: {
      uint8_t b = static_cast<const uint8_t*>(w)[i];
      auto h = static_cast<uint16_t>((b & 0x80) << 8 | (b & 0x7F) << 7);
      float s = static_cast<const float*>(scales)[r / 128 * (cols / 128) + c / 128];
      return f16_value(h) * (s * 256.0f);
    }
  }
  return 0.0f;
}

// y[t * ldy + r] = w[r] . x[t]; grid covers rows x tokens, one warp each.
__global__ void matmul_kernel(const float* x, int64_t num_tokens, const void* w, const void* scales,
                              weight_format format, int64_t rows, int64_t cols, float* y,
                              int64_t ldy) {
  int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  if (warp >= rows * num_tokens) return;
  int64_t r = warp % rows, t = warp / rows;
  float acc = 0.0f;
  for (int64_t k = lane; k < cols; k += 32)
    acc += load_weight(w, scales, format, cols, r, k) * x[t * cols + k];
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) y[t * ldy + r] = acc;
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float* h) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) h[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

// A matrix on the device: its data and, when quantized, its scales.
struct device_matrix {
  device_array<char> data, scales;
};

status upload_matrix(const matrix_view& m, device_matrix& out) {
  XMESH_CUDA_TRY(out.data.allocate(m.data_bytes()));
  XMESH_CUDA_TRY(cudaMemcpy(out.data.ptr, m.data, m.data_bytes(), cudaMemcpyHostToDevice));
  if (m.scales != nullptr) {
    XMESH_CUDA_TRY(out.scales.allocate(m.scale_bytes()));
    XMESH_CUDA_TRY(cudaMemcpy(out.scales.ptr, m.scales, m.scale_bytes(), cudaMemcpyHostToDevice));
  }
  return {};
}

void launch_matmul(const float* x, int64_t tokens, const matrix_view& m, const device_matrix& d,
                   float* y) {
  int64_t threads = m.rows * tokens * 32;
  auto blocks = static_cast<unsigned>((threads + 255) / 256);
  matmul_kernel<<<blocks, 256>>>(x, tokens, d.data.ptr, d.scales.ptr, m.format, m.rows, m.cols, y,
                                 m.rows);
}

}  // namespace

status expert_ffn(const float* x, int64_t num_tokens, const expert_weights& w, float* y) {
  const int64_t hidden = w.hidden(), inter = w.intermediate();
  device_matrix gate, up, down;
  for (auto [m, d] : {std::pair{&w.gate, &gate}, {&w.up, &up}, {&w.down, &down}}) {
    status s = upload_matrix(*m, *d);
    if (!s.ok()) return s;
  }
  device_array<float> dx, dg, du, dy;
  XMESH_CUDA_TRY(dx.allocate(num_tokens * hidden));
  XMESH_CUDA_TRY(dg.allocate(num_tokens * inter));
  XMESH_CUDA_TRY(du.allocate(num_tokens * inter));
  XMESH_CUDA_TRY(dy.allocate(num_tokens * hidden));
  XMESH_CUDA_TRY(
      cudaMemcpy(dx.ptr, x, num_tokens * hidden * sizeof(float), cudaMemcpyHostToDevice));
  launch_matmul(dx.ptr, num_tokens, w.gate, gate, dg.ptr);
  launch_matmul(dx.ptr, num_tokens, w.up, up, du.ptr);
  auto n = num_tokens * inter;
  swiglu_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(dg.ptr, du.ptr, n, dg.ptr);
  launch_matmul(dg.ptr, num_tokens, w.down, down, dy.ptr);
  XMESH_CUDA_TRY(cudaGetLastError());
  XMESH_CUDA_TRY(
      cudaMemcpy(y, dy.ptr, num_tokens * hidden * sizeof(float), cudaMemcpyDeviceToHost));
  return {};
}

}  // namespace xmesh::kernels::cuda
