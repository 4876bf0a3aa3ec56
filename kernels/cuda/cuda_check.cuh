// XMESH_CUDA_TRY: return a failed status from the enclosing launcher on any CUDA error.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels/core/status.hpp"

#define XMESH_CUDA_TRY(call)                                                                     \
  do {                                                                                           \
    cudaError_t xmesh_err_ = (call);                                                             \
    if (xmesh_err_ != cudaSuccess)                                                               \
      return ::xmesh::status::error(std::string(#call) + ": " + cudaGetErrorString(xmesh_err_)); \
  } while (0)

namespace xmesh::kernels::cuda {

/// Device memory freed on scope exit (launchers return early on errors).
template <class T>
struct device_array {
  T* ptr = nullptr;
  ~device_array() {
    if (ptr) cudaFree(ptr);
  }
  cudaError_t allocate(size_t n) { return cudaMalloc(&ptr, n * sizeof(T)); }
};

}  // namespace xmesh::kernels::cuda
