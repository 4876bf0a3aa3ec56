// XXH3_64bits compiled for AVX2 (about 3x the SSE2 build Debian ships); frame.cpp calls it
// only when the CPU has AVX2. XXH3 gives the same value for every vector width.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace xmesh::transport::detail {

uint64_t xxh3_avx2(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace xmesh::transport::detail
