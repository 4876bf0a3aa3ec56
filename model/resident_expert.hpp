// An expert's weights copied into memory a node owns: what an expert host serves and an expert
// store caches, read from the model files (or a peer's frame) at an optional emulated rate.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "kernels/expert_ffn.hpp"

namespace xmesh::model {

/// A copy of one expert's weights (64-byte aligned, like the kernels like them).
struct resident_weights {
  std::unique_ptr<std::byte, decltype(&std::free)> storage{nullptr, &std::free};
  kernels::expert_weights weights;
  int64_t bytes = 0;
};

/// The byte regions of an expert's weights, in the order they are copied, streamed and
/// checksummed: each matrix's data, then its scales when it is quantized.
std::vector<std::span<const std::byte>> regions_of(const kernels::expert_weights& w);

/// Copies the regions of an expert shaped like `layout` from `sources` (one pointer per region,
/// regions_of's order) into owned memory, at most `bytes_per_s` fast (0: as fast as memory goes).
std::shared_ptr<resident_weights> make_resident(const kernels::expert_weights& layout,
                                                const std::vector<const std::byte*>& sources,
                                                int64_t bytes_per_s);

/// A copy of an expert of the model files (`weights` points into their mapping).
std::shared_ptr<resident_weights> copy_expert(const kernels::expert_weights& weights,
                                              int64_t bytes_per_s);

/// Drops the pages of [data, data + size) from this process's mapping of the model files (whole
/// pages inside the range only): the copy is what serves, and the page cache keeps the file for
/// a re-read. Without this a node's resident memory counts each replica twice.
void release_source_pages(const void* data, int64_t size);

}  // namespace xmesh::model
