// The wire format: round trips, every validation error, and a fuzz run that must never crash.
#include "transport/frame.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace xt = xmesh::transport;

namespace {

xt::frame sample_frame(uint32_t rows, uint32_t hidden, uint32_t expert = xt::expert_per_row) {
  xt::frame f;
  f.header.kind = xt::frame_kind::dispatch;
  f.header.layer = 7;
  f.header.expert = expert;
  f.header.placement_version = 42;
  f.header.batch_id = 0x1122334455667788ull;
  f.header.num_rows = rows;
  f.header.hidden = hidden;
  f.header.flags = 5;
  for (uint32_t r = 0; r < rows; ++r) {
    f.expert_of_pair.push_back(expert == xt::expert_per_row ? int32_t(r % 8) : int32_t(expert));
    f.token_of_pair.push_back(int32_t(r * 3));
    for (uint32_t h = 0; h < hidden; ++h) f.rows.push_back(float(r) + float(h) / 1024.0f);
  }
  return f;
}

xt::frame_limits limits() {
  xt::frame_limits l;
  l.max_rows = 1024;
  l.max_hidden = 4096;
  l.max_expert = 63;
  return l;
}

template <class T>
void poke(xt::bytes& b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

// Rewrites the checksum so a test reaches the check after it.
void reseal(xt::bytes& b) {
  uint64_t sum = xt::frame_checksum(std::span<const std::byte>(b).subspan(xt::frame_header_bytes));
  poke(b, 56, sum);
}

xt::frame_errc decode_error(const xt::bytes& b, const xt::frame_limits& l = limits()) {
  return xt::decode_frame(b, l).error;
}

}  // namespace

TEST(Frame, HeaderIsSixtyFourLittleEndianBytes) {
  auto b = xt::encode_frame(sample_frame(2, 4));
  ASSERT_EQ(b.size(), 64u + 2 * 12 + 2 * 4 * 4);  // three ids per pair, one row per pair
  const unsigned char magic[4] = {'X', 'M', 'S', 'H'};
  EXPECT_EQ(std::memcmp(b.data(), magic, 4), 0);
  EXPECT_EQ(uint8_t(b[4]), 2);  // version low byte
  EXPECT_EQ(uint8_t(b[6]), 1);  // dispatch
}

TEST(Frame, RoundTripKeepsEveryField) {
  auto f = sample_frame(17, 64);
  auto b = xt::encode_frame(f);
  auto r = xt::decode_frame(b, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  const auto& h = r.frame.header;
  EXPECT_EQ(h.kind, xt::frame_kind::dispatch);
  EXPECT_EQ(h.layer, 7u);
  EXPECT_EQ(h.expert, xt::expert_per_row);
  EXPECT_EQ(h.placement_version, 42u);
  EXPECT_EQ(h.batch_id, 0x1122334455667788ull);
  EXPECT_EQ(h.flags, 5u);
  EXPECT_EQ(h.payload_bytes, b.size() - 64);
  auto back = r.frame.to_frame();
  EXPECT_EQ(back.expert_of_pair, f.expert_of_pair);
  EXPECT_EQ(back.token_of_pair, f.token_of_pair);
  EXPECT_EQ(back.rows, f.rows);
  EXPECT_EQ(r.frame.row(3)[5], f.rows[3 * 64 + 5]);
  // The view points into the buffer: no copy of the rows.
  EXPECT_EQ(reinterpret_cast<const std::byte*>(r.frame.rows.data()), b.data() + 64 + 17 * 12);
}

// Two tokens, three (token, expert) pairs: token 0's row is sent once for experts 1 and 4.
xt::frame shared_rows_frame() {
  xt::frame f;
  f.header.layer = 1;
  f.header.num_rows = 2;
  f.header.hidden = 4;
  f.expert_of_pair = {1, 4, 4};
  f.token_of_pair = {0, 1, 2};
  f.row_of_pair = {0, 0, 1};
  f.rows = {1, 2, 3, 4, 5, 6, 7, 8};
  return f;
}

TEST(Frame, PairsShareRows) {
  auto f = shared_rows_frame();
  auto b = xt::encode_frame(f);
  auto r = xt::decode_frame(b, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.frame.header.num_pairs, 3u);
  EXPECT_EQ(r.frame.pair_row(1)[0], 1);
  EXPECT_EQ(r.frame.pair_row(2)[0], 5);
  // A pair reading a row that is not there, or a result frame whose rows are shared, is rejected.
  auto bad = f;
  bad.row_of_pair = {0, 0, 2};
  EXPECT_EQ(decode_error(xt::encode_frame(bad)), xt::frame_errc::bad_shape);
  auto result = f;
  result.header.kind = xt::frame_kind::result;
  EXPECT_EQ(decode_error(xt::encode_frame(result)), xt::frame_errc::bad_shape);
  EXPECT_THROW((void)xt::frame_builder(f.header, f.expert_of_pair, f.token_of_pair, {}),
               std::invalid_argument);  // 3 pairs cannot have one row each with 2 rows
}

TEST(Frame, PairsMayCarryTheirPrecision) {
  // A head marks the pairs a node computes with its low-precision copy (a store's fallback).
  auto f = shared_rows_frame();
  f.precision_of_pair = {0, 1, 0};
  auto b = xt::encode_frame(f);
  EXPECT_EQ(b.size(), xt::frame_header_bytes + 16 * 3 + 4 * 8);  // one more int per pair
  auto r = xt::decode_frame(b, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_TRUE(r.frame.header.flags & xt::frame_flag_precision);
  EXPECT_FALSE(r.frame.low_precision(0));
  EXPECT_TRUE(r.frame.low_precision(1));
  EXPECT_EQ(r.frame.pair_row(2)[0], 5);  // the rows still follow the ids
  EXPECT_EQ(r.frame.to_frame().precision_of_pair, f.precision_of_pair);
  // Without precisions the flag is off and every pair is full precision.
  auto plain = f;
  plain.precision_of_pair.clear();
  auto p = xt::decode_frame(xt::encode_frame(plain), limits());
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p.frame.header.flags & xt::frame_flag_precision);
  EXPECT_FALSE(p.frame.low_precision(1));
  // A precision other than 0 or 1, or the flag on a result frame, is rejected; a flag that
  // disagrees with the payload's length too.
  auto two = f;
  two.precision_of_pair = {0, 2, 0};
  EXPECT_EQ(decode_error(xt::encode_frame(two)), xt::frame_errc::bad_shape);
  auto flagged = xt::encode_frame(plain);
  poke(flagged, 40, xt::frame_flag_precision);
  EXPECT_EQ(decode_error(flagged), xt::frame_errc::length_mismatch);
  auto result = xt::encode_frame(plain);
  poke(result, 6, static_cast<uint8_t>(xt::frame_kind::result));
  poke(result, 40, xt::frame_flag_precision);
  EXPECT_EQ(decode_error(result), xt::frame_errc::bad_shape);
}

TEST(Frame, PrefetchFramesNameExpertsOfALayer) {
  xt::frame_header h;
  h.layer = 2;
  h.batch_id = 9;
  std::vector<int32_t> experts = {5, 1};
  auto b = xt::encode_prefetch_frame(h, experts);
  EXPECT_EQ(b.size(), xt::frame_header_bytes + 8);
  auto r = xt::decode_frame(b, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.frame.header.kind, xt::frame_kind::prefetch);
  EXPECT_EQ(r.frame.header.layer, 2u);
  EXPECT_EQ(std::vector<int32_t>(r.frame.expert_of_pair.begin(), r.frame.expert_of_pair.end()),
            experts);
  // An expert beyond the limits, or a length that disagrees with the count, is rejected.
  std::vector<int32_t> far = {64};
  EXPECT_EQ(decode_error(xt::encode_prefetch_frame(h, far)), xt::frame_errc::bad_expert);
  auto longer = b;
  poke(longer, 44, uint32_t{3});
  EXPECT_EQ(decode_error(longer), xt::frame_errc::length_mismatch);
}

TEST(Frame, FixedExpertAndEmptyAndErrorFramesRoundTrip) {
  auto fixed = xt::encode_frame(sample_frame(3, 8, 9));
  EXPECT_TRUE(xt::decode_frame(fixed, limits()).ok());
  auto empty = xt::encode_frame(sample_frame(0, 8));
  EXPECT_TRUE(xt::decode_frame(empty, limits()).ok());
  xt::frame_header h;
  h.batch_id = 3;
  auto err = xt::encode_error_frame(h, "expert 3 unavailable");
  auto r = xt::decode_frame(err, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.frame.header.kind, xt::frame_kind::error);
  EXPECT_EQ(r.frame.error_text, "expert 3 unavailable");
}

TEST(Frame, WeightsFramesCarryTheirBytesAndTheirChecksum) {
  std::vector<std::byte> gate(100), up(60);
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = std::byte(i * 7);
  for (size_t i = 0; i < up.size(); ++i) up[i] = std::byte(i * 3 + 1);
  std::vector<std::byte> all(gate);
  all.insert(all.end(), up.begin(), up.end());
  xt::frame_header h;
  h.kind = xt::frame_kind::weights;
  h.layer = 2;
  h.expert = 5;
  auto b = xt::encode_blob_frame(h, all);
  auto r = xt::decode_frame(b, limits());
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.frame.header.expert, 5u);
  ASSERT_EQ(r.frame.blob.size(), all.size());
  EXPECT_TRUE(std::equal(all.begin(), all.end(), r.frame.blob.begin()));
  // The header's checksum is the checksum of the parts, computed piece by piece.
  EXPECT_EQ(r.frame.header.checksum,
            xt::checksum_of_parts(
                std::array{std::span<const std::byte>(gate), std::span<const std::byte>(up)}));
  // A fetch frame has no payload; one with a payload, or naming no expert, is rejected.
  h.kind = xt::frame_kind::fetch;
  auto f = xt::encode_blob_frame(h, {});
  EXPECT_TRUE(xt::decode_frame(f, limits()).ok());
  EXPECT_THROW((void)xt::encode_blob_frame(h, all), std::invalid_argument);
  h.kind = xt::frame_kind::weights;
  auto tamper = b;
  poke<uint8_t>(tamper, 6, 4);  // a weights payload relabelled as fetch
  EXPECT_EQ(decode_error(tamper), xt::frame_errc::length_mismatch);
  h.expert = xt::expert_per_row;
  EXPECT_THROW((void)xt::encode_blob_frame(h, all), std::invalid_argument);
}

TEST(Frame, EncodeRejectsInconsistentSpans) {
  auto f = sample_frame(2, 4);
  f.rows.pop_back();
  EXPECT_THROW((void)xt::encode_frame(f), std::invalid_argument);
}

TEST(Frame, RejectsEachCorruption) {
  using E = xt::frame_errc;
  const auto good = xt::encode_frame(sample_frame(4, 16));
  auto with = [&](auto edit) {
    auto b = good;
    edit(b);
    return decode_error(b);
  };
  EXPECT_EQ(with([](auto& b) { b.resize(63); }), E::truncated);
  EXPECT_EQ(with([](auto& b) { b.pop_back(); }), E::truncated);
  EXPECT_EQ(with([](auto& b) { b.push_back(std::byte{0}); }), E::length_mismatch);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 0, 0x12345678); }), E::bad_magic);
  EXPECT_EQ(with([](auto& b) { poke<uint16_t>(b, 4, 1); }), E::bad_version);
  EXPECT_EQ(with([](auto& b) { poke<uint16_t>(b, 4, 3); }), E::bad_version);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 44, 1); }), E::bad_shape);  // 4 rows, 1 pair
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 44, 5); }), E::length_mismatch);
  EXPECT_EQ(with([](auto& b) { poke<uint8_t>(b, 6, 0); }), E::bad_kind);
  EXPECT_EQ(with([](auto& b) { poke<uint8_t>(b, 6, 7); }), E::bad_kind);
  // A dispatch frame relabelled as fetch or weights has rows those kinds never carry.
  EXPECT_EQ(with([](auto& b) { poke<uint8_t>(b, 6, 4); }), E::bad_shape);
  EXPECT_EQ(with([](auto& b) { poke<uint8_t>(b, 6, 5); }), E::bad_shape);
  EXPECT_EQ(with([](auto& b) { poke<uint8_t>(b, 7, 1); }), E::bad_dtype);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 32, 5); }), E::bad_shape);  // 5 rows, 4 pairs
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 32, 3); }), E::length_mismatch);
  EXPECT_EQ(with([](auto& b) { poke<uint64_t>(b, 48, 999); }), E::length_mismatch);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 32, 100000); }), E::oversized);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 36, 1u << 20); }), E::oversized);
  EXPECT_EQ(with([](auto& b) { poke<uint32_t>(b, 12, 64); }), E::bad_expert);
  EXPECT_EQ(with([](auto& b) { b[100] ^= std::byte{1}; }), E::bad_checksum);
  EXPECT_EQ(with([](auto& b) { poke<uint64_t>(b, 56, 0); }), E::bad_checksum);
  // Row-level checks run on checksummed bytes: reseal after editing.
  EXPECT_EQ(with([](auto& b) {
              poke<int32_t>(b, 64, 70);
              reseal(b);
            }),
            E::bad_expert);
  EXPECT_EQ(with([](auto& b) {
              poke<int32_t>(b, 64, -1);
              reseal(b);
            }),
            E::bad_expert);
  EXPECT_EQ(with([](auto& b) {
              poke<int32_t>(b, 64 + 16, -5);
              reseal(b);
            }),
            E::bad_shape);
  auto fixed = xt::encode_frame(sample_frame(2, 4, 9));
  poke<int32_t>(fixed, 64, 10);
  reseal(fixed);
  EXPECT_EQ(decode_error(fixed), E::bad_expert);
}

TEST(Frame, RejectsShapeAgainstLimits) {
  auto b = xt::encode_frame(sample_frame(4, 16));
  auto l = limits();
  l.expected_hidden = 32;
  EXPECT_EQ(decode_error(b, l), xt::frame_errc::bad_shape);
  l = limits();
  l.max_payload_bytes = 100;
  EXPECT_EQ(decode_error(b, l), xt::frame_errc::oversized);
  // An error frame must not carry rows; a huge error text is oversized.
  xt::frame_header h;
  auto err = xt::encode_error_frame(h, "boom");
  auto rows = err;
  poke<uint32_t>(rows, 32, 1);
  EXPECT_EQ(decode_error(rows), xt::frame_errc::bad_shape);
  auto huge = xt::encode_error_frame(h, std::string(70000, 'x'));
  EXPECT_EQ(decode_error(huge), xt::frame_errc::oversized);
  // Shapes whose size overflows 64 bits are oversized, not wrapped around.
  l = limits();
  l.max_rows = l.max_hidden = 0xFFFFFFFFu;
  l.max_payload_bytes = ~0ull;
  poke<uint32_t>(b, 32, 0xFFFFFFFFu);
  poke<uint32_t>(b, 36, 0xFFFFFFFFu);
  EXPECT_NE(decode_error(b, l), xt::frame_errc::ok);
}

TEST(Frame, ReasonsAndNamesAreShort) {
  xt::bytes b(10);
  auto r = xt::decode_frame(b, limits());
  EXPECT_EQ(r.error, xt::frame_errc::truncated);
  EXPECT_FALSE(r.reason.empty());
  EXPECT_EQ(xt::to_string(xt::frame_errc::bad_checksum), "bad_checksum");
}

// 10,000 random and mutated frames: decode never crashes, and rejects every corrupted one
// (a mutation that leaves the bytes unchanged is not a corruption).
TEST(Frame, FuzzNeverCrashesAndRejectsCorruption) {
  std::mt19937_64 rng(20240607);
  const auto l = limits();
  size_t rejected = 0;
  for (int i = 0; i < 10000; ++i) {
    auto f = sample_frame(uint32_t(rng() % 9), uint32_t(1 + rng() % 32));
    const auto good = xt::encode_frame(f);
    auto b = good;
    bool resealed = false;
    switch (rng() % 5) {
      case 0:  // random bytes, sometimes with a valid magic
        b.resize(rng() % 512);
        for (auto& x : b) x = std::byte(rng());
        if (b.size() >= 4 && rng() % 2) poke<uint32_t>(b, 0, xt::frame_magic);
        break;
      case 1:  // flip 1-4 bits anywhere
        for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k)
          b[rng() % b.size()] ^= std::byte(1u << (rng() % 8));
        break;
      case 2:  // truncate or extend
        b.resize(rng() % 2 ? rng() % b.size() : b.size() + 1 + rng() % 64);
        break;
      case 3:  // random header field value
        poke<uint32_t>(b, 4 * (rng() % 16), uint32_t(rng()));
        break;
      default:  // header field edit with a valid checksum: needs the structural checks
        poke<uint32_t>(b, 4 * (2 + rng() % 10), uint32_t(rng()));
        if (b.size() >= 64) reseal(b);
        resealed = true;
        break;
    }
    auto r = xt::decode_frame(b, l);
    if (b == good) {
      EXPECT_TRUE(r.ok()) << r.reason;
      continue;
    }
    ++rejected;
    if (r.ok() && resealed) {
      // A re-checksummed edit is a well-formed frame: it may pass, but must be consistent.
      const auto& h = r.frame.header;
      EXPECT_EQ(r.frame.rows.size(), size_t(h.num_rows) * h.hidden);
      EXPECT_EQ(b.size(), 64 + h.payload_bytes);
      --rejected;
    } else if (r.ok()) {
      // Only semantically valid edits of un-checksummed header fields may pass (layer, batch...).
      auto g = xt::decode_frame(good, l);
      ASSERT_TRUE(g.ok());
      EXPECT_EQ(r.frame.header.num_rows, g.frame.header.num_rows);
      if (g.frame.header.num_rows > 0) {
        EXPECT_EQ(r.frame.header.hidden, g.frame.header.hidden);
      }
      EXPECT_EQ(r.frame.header.payload_bytes, g.frame.header.payload_bytes);
      EXPECT_TRUE(std::equal(r.frame.rows.begin(), r.frame.rows.end(), g.frame.rows.begin()));
    }
  }
  EXPECT_GT(rejected, 8500u);
}
