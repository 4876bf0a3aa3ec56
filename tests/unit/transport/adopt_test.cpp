#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "transport/transport.hpp"

namespace xmesh::transport {
namespace {

// A block a library owns: counts how often it was given back.
struct library_block {
  std::vector<std::byte> memory;
  std::atomic<int> released{0};
  explicit library_block(size_t size) : memory(size) {
    for (size_t i = 0; i < size; ++i) memory[i] = std::byte(i * 7);
  }
  bytes adopt() {
    return adopt_bytes(memory.data(), memory.size(), [this] { ++released; });
  }
};

TEST(AdoptBytes, LargeBlockIsUsedInPlaceAndReleasedOnceWhenFreed) {
  library_block block(1 << 20);
  {
    bytes b = block.adopt();
    EXPECT_EQ(b.data(), block.memory.data());
    EXPECT_EQ(b.size(), block.memory.size());
    EXPECT_EQ(b[12345], std::byte(12345 * 7));
    bytes moved = std::move(b);
    EXPECT_EQ(block.released, 0);
  }
  EXPECT_EQ(block.released, 1);
}

TEST(AdoptBytes, CopyIsIndependentOfTheAdoptedBlock) {
  library_block block(detail::adopt_min_bytes);
  bytes copy;
  {
    bytes b = block.adopt();
    copy = b;
    EXPECT_NE(copy.data(), block.memory.data());
  }
  EXPECT_EQ(block.released, 1);
  EXPECT_EQ(0, std::memcmp(copy.data(), block.memory.data(), copy.size()));
}

TEST(AdoptBytes, SmallBlockIsCopiedAndReleasedAtOnce) {
  library_block block(4096);
  bytes b = block.adopt();
  EXPECT_EQ(block.released, 1);
  EXPECT_NE(b.data(), block.memory.data());
  EXPECT_EQ(0, std::memcmp(b.data(), block.memory.data(), b.size()));
}

TEST(AdoptBytes, GrowingPastTheBlockReleasesIt) {
  library_block block(1 << 17);
  bytes b = block.adopt();
  b.resize(b.size() * 2);  // reallocates: the adopted block goes back to its owner
  EXPECT_EQ(block.released, 1);
  EXPECT_NE(b.data(), block.memory.data());
  EXPECT_EQ(b[100], std::byte(100 * 7));
}

TEST(AdoptBytes, FreedOnAnotherThread) {
  library_block block(1 << 20);
  bytes b = block.adopt();
  std::thread([m = std::move(b)]() mutable { bytes gone = std::move(m); }).join();
  EXPECT_EQ(block.released, 1);
}

TEST(AdoptBytes, OrdinaryBytesAreUntouched) {
  bytes a(1 << 20);
  a[0] = std::byte{1};
  bytes c = a;
  EXPECT_EQ(c[0], std::byte{1});
}

}  // namespace
}  // namespace xmesh::transport
