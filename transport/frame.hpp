// The data plane's wire format: a fixed 64-byte little-endian header followed by the payload.
//
//   off  size  field
//     0     4  magic 0x48534D58 ('XMSH')       32     4  num_rows
//     4     2  version (2)                     36     4  hidden
//     6     1  kind (1 dispatch, 2 result,     40     4  flags (bit 31: pair precision,
//                    3 error, 4 fetch,                    the others application-defined)
//                    5 weights, 6 prefetch)    44     4  num_pairs
//     7     1  dtype (0 = f32)                 48     8  payload_bytes
//     8     4  layer                           56     8  checksum (XXH3_64bits of the payload)
//    12     4  expert (0xFFFFFFFF: per pair)
//    16     8  placement_version
//    24     8  batch_id
//
// Dispatch/result payload: int32 expert_of_pair[num_pairs], int32 token_of_pair[num_pairs],
// int32 row_of_pair[num_pairs], float rows[num_rows][hidden]. A pair is one (token, expert) to
// compute, reading row row_of_pair; a dispatch frame carries each token's row once however many
// of its experts the node runs (num_rows <= num_pairs), a result frame one output row per pair
// (num_rows == num_pairs, row_of_pair[p] == p). A dispatch frame with flag bit 31 set
// (frame_flag_precision) carries int32 precision_of_pair[num_pairs] after row_of_pair, before
// the rows: 1 asks for the pair to be computed with the node's low-precision copy of its expert
// (a miss under a store's fallback), 0 with the full one. Error payload: UTF-8 text (num_rows =
// hidden = 0); an error frame's `flags` carry the application's error code. Fetch (asks for one
// expert's weights) and weights (carries them) frames name the expert in the header and have no
// rows: fetch has no payload, weights has the expert's raw tensor bytes, so the header checksum
// is their checksum. A prefetch frame (warm these experts of `layer`: a head's pre-gating
// prediction for the next token) has no rows and carries int32 expert_of_pair[num_pairs]; it is
// answered with an empty result frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/transport.hpp"

namespace xmesh::transport {

/// 'XMSH' read as a little-endian uint32.
inline constexpr uint32_t frame_magic = 0x48534D58u;
/// The only wire version this build speaks (2: rows shared by pairs).
inline constexpr uint16_t frame_version = 2;
/// Size of the fixed header in bytes.
inline constexpr size_t frame_header_bytes = 64;
/// `expert` value meaning "each pair names its expert in expert_of_pair".
inline constexpr uint32_t expert_per_row = 0xFFFFFFFFu;

/// A dispatch frame's flag: its pairs carry precision_of_pair (see the layout above).
inline constexpr uint32_t frame_flag_precision = 1u << 31;

/// What a frame carries.
enum class frame_kind : uint8_t {
  dispatch = 1,
  result = 2,
  error = 3,
  fetch = 4,
  weights = 5,
  prefetch = 6
};

/// Element type of the activation rows.
enum class frame_dtype : uint8_t { f32 = 0 };

/// The header fields a sender chooses; payload_bytes and checksum are computed by encode_frame.
struct frame_header {
  frame_kind kind = frame_kind::dispatch;
  frame_dtype dtype = frame_dtype::f32;
  uint32_t layer = 0;
  uint32_t expert = expert_per_row;
  uint64_t placement_version = 0;
  uint64_t batch_id = 0;
  uint32_t num_rows = 0;
  uint32_t hidden = 0;
  uint32_t flags = 0;
  uint32_t num_pairs = 0;      // filled in by encode_frame / frame_builder from the id spans
  uint64_t payload_bytes = 0;  // filled in by encode/decode
  uint64_t checksum = 0;       // filled in by encode/decode
};

/// An owning frame, convenient for tests and control paths (the token path uses frame_view).
struct frame {
  frame_header header;
  std::vector<int32_t> expert_of_pair;
  std::vector<int32_t> token_of_pair;
  std::vector<int32_t> row_of_pair;
  std::vector<int32_t> precision_of_pair;  // empty unless header.flags has frame_flag_precision
  std::vector<float> rows;                 // num_rows * hidden, row-major
  std::string error_text;
};

/// A validated frame that points into the received buffer (no copy of the rows); valid only
/// while that buffer lives and is not modified.
struct frame_view {
  frame_header header;
  std::span<const int32_t> expert_of_pair;
  std::span<const int32_t> token_of_pair;
  std::span<const int32_t> row_of_pair;
  std::span<const int32_t> precision_of_pair;  // empty unless the frame_flag_precision flag
  std::span<const float> rows;                 // num_rows * hidden, row-major
  std::string_view error_text;
  std::span<const std::byte> blob;  // a weights frame's payload

  /// The `hidden` floats of row `i` (i < num_rows).
  [[nodiscard]] std::span<const float> row(size_t i) const {
    return rows.subspan(i * header.hidden, header.hidden);
  }
  /// Whether pair `p` asks for the low-precision copy of its expert.
  [[nodiscard]] bool low_precision(size_t p) const {
    return !precision_of_pair.empty() && precision_of_pair[p] != 0;
  }
  /// The row pair `p` reads.
  [[nodiscard]] std::span<const float> pair_row(size_t p) const {
    return row(static_cast<size_t>(row_of_pair[p]));
  }
  /// A deep copy, e.g. to keep the frame after its buffer goes away.
  [[nodiscard]] frame to_frame() const;
};

/// Why decode_frame rejected a buffer.
enum class frame_errc : uint8_t {
  ok = 0,
  truncated,  // shorter than the header, or than header + payload_bytes
  bad_magic,
  bad_version,  // version != 1 or reserved != 0
  bad_kind,
  bad_dtype,
  bad_shape,        // hidden != expected, error frame with rows, negative token, row out of
                    // range, a precision other than 0 or 1 (or on a frame other than dispatch)
  length_mismatch,  // payload_bytes disagrees with the shape, or trailing bytes
  bad_checksum,
  oversized,   // num_rows / hidden / payload beyond the limits
  bad_expert,  // expert id beyond max_expert, or a row disagreeing with header.expert
};

/// Short stable name of an error code ("bad_magic"), e.g. for metric labels.
[[nodiscard]] std::string_view to_string(frame_errc e);

/// What a receiver accepts; everything beyond is rejected before any use or allocation.
struct frame_limits {
  uint32_t max_rows = 1u << 16;
  uint32_t max_hidden = 1u << 16;
  uint32_t max_expert = (1u << 16) - 1;  // largest valid expert id
  uint32_t expected_hidden = 0;          // 0: any hidden up to max_hidden
  uint64_t max_payload_bytes = 1ull << 30;
  uint64_t max_error_text_bytes = 1u << 16;
};

/// decode_frame's answer: a frame_view, or an error code with a short reason.
struct decode_result {
  frame_errc error = frame_errc::ok;
  std::string reason;  // empty on success
  frame_view frame;    // meaningful only when ok()

  [[nodiscard]] bool ok() const { return error == frame_errc::ok; }
  explicit operator bool() const { return ok(); }
};

/// Encodes a dispatch or result frame with one row per pair; throws std::invalid_argument when
/// the span sizes do not match header.num_rows / hidden (a caller bug, caught before anything
/// goes on the wire).
[[nodiscard]] bytes encode_frame(const frame_header& header,
                                 std::span<const int32_t> expert_of_pair,
                                 std::span<const int32_t> token_of_pair,
                                 std::span<const float> rows);

/// A dispatch or result frame being built in place: the expert and token ids are written, the
/// rows are left for the caller to fill (gathered from activations, or computed straight into
/// the frame), then seal() checksums the payload and writes the header. No staging copies.
class frame_builder {
 public:
  /// Pair p reads row `row_of_pair[p]` of header.num_rows rows; an empty `row_of_pair` means
  /// one row per pair. A non-empty `precision_of_pair` (dispatch frames) is carried, and sets
  /// frame_flag_precision. Throws std::invalid_argument when the spans disagree with num_rows.
  frame_builder(const frame_header& header, std::span<const int32_t> expert_of_pair,
                std::span<const int32_t> token_of_pair, std::span<const int32_t> row_of_pair = {},
                std::span<const int32_t> precision_of_pair = {});
  /// The num_rows x hidden floats of the payload, row-major, to be filled.
  [[nodiscard]] float* rows() { return rows_; }
  /// The finished frame; the builder is empty afterwards.
  [[nodiscard]] bytes seal();

 private:
  frame_header header_;
  bytes out_;
  float* rows_ = nullptr;
};

/// Encodes an owning frame (dispatch/result use the vectors, error uses error_text).
[[nodiscard]] bytes encode_frame(const frame& f);

/// Encodes an error frame carrying `text`; layer/expert/batch_id are taken from `header`.
[[nodiscard]] bytes encode_error_frame(const frame_header& header, std::string_view text);

/// Encodes a fetch frame (`blob` empty) or a weights frame carrying `blob`; header.expert names
/// the expert (not expert_per_row).
[[nodiscard]] bytes encode_blob_frame(const frame_header& header, std::span<const std::byte> blob);

/// Encodes a prefetch frame naming `experts` of header.layer.
[[nodiscard]] bytes encode_prefetch_frame(const frame_header& header,
                                          std::span<const int32_t> experts);

/// XXH3_64bits of the concatenation of `parts`: the checksum a weights frame of those bytes
/// carries.
[[nodiscard]] uint64_t checksum_of_parts(std::span<const std::span<const std::byte>> parts);

/// Validates every field of `buffer` against `limits` and returns a view into it. The buffer
/// must be 4-byte aligned for the views (received `bytes` always are); an unaligned buffer is
/// rejected as bad_shape rather than read with misaligned loads.
[[nodiscard]] decode_result decode_frame(std::span<const std::byte> buffer,
                                         const frame_limits& limits);

/// XXH3_64bits of `data`: the checksum the header carries.
[[nodiscard]] uint64_t frame_checksum(std::span<const std::byte> data);

}  // namespace xmesh::transport
