#include <cuda_runtime.h>

#include "kernels/cuda/cuda_kernels.hpp"

namespace xmesh::kernels::cuda {

int device_count(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error: no device is not a failure here
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n;
}

}  // namespace xmesh::kernels::cuda
