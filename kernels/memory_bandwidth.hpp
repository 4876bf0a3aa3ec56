// Measures how fast this machine streams memory: the ceiling of memory-bound decode.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/core/thread_pool.hpp"

namespace xmesh::kernels {

/// Reads every region once per pass with all threads, `passes` times; returns the best bytes/s.
/// Callers pass the memory decode really reads (the model's weights), so no extra RSS is needed.
double measure_read_bandwidth(std::span<const std::span<const std::byte>> regions, int passes,
                              thread_pool& pool);

}  // namespace xmesh::kernels
