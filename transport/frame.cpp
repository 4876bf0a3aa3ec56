#include "transport/frame.hpp"

#include <xxhash.h>

#include <bit>
#include <cstring>
#include <stdexcept>

namespace xmesh::transport {

// The header is written with memcpy of native integers: correct only on little-endian hosts.
static_assert(std::endian::native == std::endian::little, "wire format is little-endian");

namespace {

// -- header field offsets -------------------------------------------------------------------
constexpr size_t off_magic = 0, off_version = 4, off_kind = 6, off_dtype = 7, off_layer = 8,
                 off_expert = 12, off_placement = 16, off_batch = 24, off_rows = 32,
                 off_hidden = 36, off_flags = 40, off_pairs = 44, off_payload = 48,
                 off_checksum = 56;

template <class T>
void put(std::byte* base, size_t off, T v) {
  std::memcpy(base + off, &v, sizeof v);
}

template <class T>
T get(const std::byte* base, size_t off) {
  T v;
  std::memcpy(&v, base + off, sizeof v);
  return v;
}

void write_header(std::byte* h, const frame_header& f) {
  put<uint32_t>(h, off_magic, frame_magic);
  put<uint16_t>(h, off_version, frame_version);
  put<uint8_t>(h, off_kind, static_cast<uint8_t>(f.kind));
  put<uint8_t>(h, off_dtype, static_cast<uint8_t>(f.dtype));
  put<uint32_t>(h, off_layer, f.layer);
  put<uint32_t>(h, off_expert, f.expert);
  put<uint64_t>(h, off_placement, f.placement_version);
  put<uint64_t>(h, off_batch, f.batch_id);
  put<uint32_t>(h, off_rows, f.num_rows);
  put<uint32_t>(h, off_hidden, f.hidden);
  put<uint32_t>(h, off_flags, f.flags);
  put<uint32_t>(h, off_pairs, f.num_pairs);
  put<uint64_t>(h, off_payload, f.payload_bytes);
  put<uint64_t>(h, off_checksum, f.checksum);
}

template <class T>
void append(bytes& out, std::span<const T> s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size_bytes());  // insert, not resize: no zero fill first
}

// Writes the header last, once the payload (and so its checksum) is known.
bytes finish(bytes out, frame_header h) {
  h.payload_bytes = out.size() - frame_header_bytes;
  h.checksum = frame_checksum(std::span<const std::byte>(out).subspan(frame_header_bytes));
  write_header(out.data(), h);
  return out;
}

decode_result fail(frame_errc e, std::string reason) {
  decode_result r;
  r.error = e;
  r.reason = std::move(reason);
  return r;
}

// Payload bytes a dispatch/result frame of this shape must carry, or false on overflow.
bool rows_payload_bytes(uint64_t num_pairs, uint64_t num_rows, uint64_t hidden, bool precision,
                        uint64_t& out) {
  uint64_t per_row = 0, rows = 0, ids = 0;
  if (__builtin_mul_overflow(hidden, uint64_t{4}, &per_row)) return false;
  if (__builtin_mul_overflow(per_row, num_rows, &rows)) return false;
  if (__builtin_mul_overflow(num_pairs, precision ? uint64_t{16} : uint64_t{12}, &ids))
    return false;
  return !__builtin_add_overflow(rows, ids, &out);
}

frame_header read_header(const std::byte* h) {
  frame_header f;
  f.kind = static_cast<frame_kind>(get<uint8_t>(h, off_kind));
  f.dtype = static_cast<frame_dtype>(get<uint8_t>(h, off_dtype));
  f.layer = get<uint32_t>(h, off_layer);
  f.expert = get<uint32_t>(h, off_expert);
  f.placement_version = get<uint64_t>(h, off_placement);
  f.batch_id = get<uint64_t>(h, off_batch);
  f.num_rows = get<uint32_t>(h, off_rows);
  f.hidden = get<uint32_t>(h, off_hidden);
  f.flags = get<uint32_t>(h, off_flags);
  f.num_pairs = get<uint32_t>(h, off_pairs);
  f.payload_bytes = get<uint64_t>(h, off_payload);
  f.checksum = get<uint64_t>(h, off_checksum);
  return f;
}

// Fixed-size header checks: nothing here depends on the payload.
decode_result check_header(const std::byte* h, const frame_header& f, const frame_limits& lim) {
  using std::to_string;
  if (get<uint32_t>(h, off_magic) != frame_magic) return fail(frame_errc::bad_magic, "bad magic");
  if (auto v = get<uint16_t>(h, off_version); v != frame_version)
    return fail(frame_errc::bad_version, "unsupported version " + to_string(v));
  auto k = static_cast<uint8_t>(f.kind);
  if (k < 1 || k > 6) return fail(frame_errc::bad_kind, "unknown kind " + to_string(k));
  if (f.dtype != frame_dtype::f32)
    return fail(frame_errc::bad_dtype, "unknown dtype " + to_string(uint8_t(f.dtype)));
  if (f.kind == frame_kind::fetch || f.kind == frame_kind::weights) {
    if (f.num_rows != 0 || f.hidden != 0 || f.num_pairs != 0)
      return fail(frame_errc::bad_shape, "fetch or weights frame with rows");
    if (f.expert == expert_per_row || f.expert > lim.max_expert)
      return fail(frame_errc::bad_expert,
                  "fetch or weights frame for expert " + to_string(f.expert));
    if (f.kind == frame_kind::fetch && f.payload_bytes != 0)
      return fail(frame_errc::length_mismatch, "fetch frame with a payload");
    if (f.payload_bytes > lim.max_payload_bytes)
      return fail(frame_errc::oversized, "weights of " + to_string(f.payload_bytes) + " bytes");
    return {};
  }
  if (f.kind == frame_kind::prefetch) {
    if (f.num_rows != 0 || f.hidden != 0 || f.expert != expert_per_row)
      return fail(frame_errc::bad_shape, "prefetch frame with rows");
    if (f.num_pairs > lim.max_rows)
      return fail(frame_errc::oversized, "prefetch of " + to_string(f.num_pairs) + " experts");
    if (f.payload_bytes != 4 * uint64_t{f.num_pairs})
      return fail(frame_errc::length_mismatch, "payload_bytes " + to_string(f.payload_bytes) +
                                                   " for " + to_string(f.num_pairs) + " experts");
    return {};
  }
  if (f.kind == frame_kind::error) {
    if (f.num_rows != 0 || f.hidden != 0 || f.num_pairs != 0)
      return fail(frame_errc::bad_shape, "error frame with rows");
    if (f.payload_bytes > lim.max_error_text_bytes)
      return fail(frame_errc::oversized, "error text of " + to_string(f.payload_bytes) + " bytes");
    return {};
  }
  if (f.num_rows > lim.max_rows || f.num_pairs > lim.max_rows)
    return fail(frame_errc::oversized, "num_rows " + to_string(f.num_rows) + " or num_pairs " +
                                           to_string(f.num_pairs) + " > " +
                                           to_string(lim.max_rows));
  if (f.hidden > lim.max_hidden)
    return fail(frame_errc::oversized,
                "hidden " + to_string(f.hidden) + " > " + to_string(lim.max_hidden));
  if (lim.expected_hidden != 0 && f.hidden != lim.expected_hidden)
    return fail(frame_errc::bad_shape,
                "hidden " + to_string(f.hidden) + ", expected " + to_string(lim.expected_hidden));
  if (f.num_rows > 0 && f.hidden == 0) return fail(frame_errc::bad_shape, "rows of hidden 0");
  if (f.num_rows > f.num_pairs || (f.num_pairs > 0 && f.num_rows == 0))
    return fail(frame_errc::bad_shape,
                to_string(f.num_rows) + " rows for " + to_string(f.num_pairs) + " pairs");
  if (f.kind == frame_kind::result && f.num_rows != f.num_pairs)
    return fail(frame_errc::bad_shape, "a result frame has one row per pair");
  if (f.expert != expert_per_row && f.expert > lim.max_expert)
    return fail(frame_errc::bad_expert,
                "expert " + to_string(f.expert) + " > " + to_string(lim.max_expert));
  const bool precision = (f.flags & frame_flag_precision) != 0;
  if (precision && f.kind != frame_kind::dispatch)
    return fail(frame_errc::bad_shape, "pair precision on a frame other than dispatch");
  uint64_t want = 0;
  if (!rows_payload_bytes(f.num_pairs, f.num_rows, f.hidden, precision, want) ||
      want > lim.max_payload_bytes)
    return fail(frame_errc::oversized, "payload of shape beyond max_payload_bytes");
  if (f.payload_bytes != want)
    return fail(frame_errc::length_mismatch, "payload_bytes " + to_string(f.payload_bytes) +
                                                 " but shape needs " + to_string(want));
  return {};
}

// Per-row checks, run after the checksum so they read verified bytes only.
decode_result check_rows(const frame_view& v, const frame_limits& lim) {
  const uint32_t fixed = v.header.expert;
  const bool result = v.header.kind == frame_kind::result;
  for (size_t i = 0; i < v.expert_of_pair.size(); ++i) {
    int32_t e = v.expert_of_pair[i];
    if (e < 0 || uint32_t(e) > lim.max_expert || (fixed != expert_per_row && uint32_t(e) != fixed))
      return fail(frame_errc::bad_expert,
                  "pair " + std::to_string(i) + " names expert " + std::to_string(e));
    if (v.token_of_pair[i] < 0)
      return fail(frame_errc::bad_shape, "pair " + std::to_string(i) + " has a negative token");
    const int32_t r = v.row_of_pair[i];
    if (r < 0 || uint32_t(r) >= v.header.num_rows || (result && size_t(r) != i))
      return fail(frame_errc::bad_shape,
                  "pair " + std::to_string(i) + " reads row " + std::to_string(r));
    if (!v.precision_of_pair.empty() && (v.precision_of_pair[i] & ~1) != 0)
      return fail(frame_errc::bad_shape, "pair " + std::to_string(i) + " has precision " +
                                             std::to_string(v.precision_of_pair[i]));
  }
  return {};
}

}  // namespace

std::string_view to_string(frame_errc e) {
  switch (e) {
    case frame_errc::ok:
      return "ok";
    case frame_errc::truncated:
      return "truncated";
    case frame_errc::bad_magic:
      return "bad_magic";
    case frame_errc::bad_version:
      return "bad_version";
    case frame_errc::bad_kind:
      return "bad_kind";
    case frame_errc::bad_dtype:
      return "bad_dtype";
    case frame_errc::bad_shape:
      return "bad_shape";
    case frame_errc::length_mismatch:
      return "length_mismatch";
    case frame_errc::bad_checksum:
      return "bad_checksum";
    case frame_errc::oversized:
      return "oversized";
    case frame_errc::bad_expert:
      return "bad_expert";
  }
  return "unknown";
}

#ifdef XMESH_XXH3_AVX2
namespace detail {
uint64_t xxh3_avx2(const void* data, size_t size);
}
#endif

uint64_t frame_checksum(std::span<const std::byte> data) {
#ifdef XMESH_XXH3_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return detail::xxh3_avx2(data.data(), data.size());
#endif
  return XXH3_64bits(data.data(), data.size());
}

frame frame_view::to_frame() const {
  frame f;
  f.header = header;
  f.expert_of_pair.assign(expert_of_pair.begin(), expert_of_pair.end());
  f.token_of_pair.assign(token_of_pair.begin(), token_of_pair.end());
  f.row_of_pair.assign(row_of_pair.begin(), row_of_pair.end());
  f.precision_of_pair.assign(precision_of_pair.begin(), precision_of_pair.end());
  f.rows.assign(rows.begin(), rows.end());
  f.error_text.assign(error_text);
  return f;
}

bytes encode_frame(const frame_header& header, std::span<const int32_t> expert_of_pair,
                   std::span<const int32_t> token_of_pair, std::span<const float> rows) {
  if (header.kind == frame_kind::error) throw std::invalid_argument("use encode_error_frame");
  if (rows.size() != size_t{header.num_rows} * header.hidden)
    throw std::invalid_argument("encode_frame: span sizes disagree with num_rows/hidden");
  frame_builder b(header, expert_of_pair, token_of_pair);
  if (!rows.empty()) std::memcpy(b.rows(), rows.data(), rows.size_bytes());
  return b.seal();
}

frame_builder::frame_builder(const frame_header& header, std::span<const int32_t> expert_of_pair,
                             std::span<const int32_t> token_of_pair,
                             std::span<const int32_t> row_of_pair,
                             std::span<const int32_t> precision_of_pair)
    : header_(header) {
  const size_t p = expert_of_pair.size(), n = header.num_rows;
  const bool precision = !precision_of_pair.empty();
  if (header.kind == frame_kind::error || token_of_pair.size() != p ||
      (row_of_pair.empty() ? n != p : row_of_pair.size() != p) ||
      (precision && (precision_of_pair.size() != p || header.kind != frame_kind::dispatch)))
    throw std::invalid_argument("frame_builder: id spans disagree with num_rows");
  header_.num_pairs = static_cast<uint32_t>(p);
  header_.flags =
      precision ? header.flags | frame_flag_precision : header.flags & ~frame_flag_precision;
  const size_t ints = precision ? 4 : 3;
  const size_t size = frame_header_bytes + 4 * ints * p + 4 * n * size_t{header.hidden};
  out_.reserve(size + message_tail_room);  // the seal's trailer goes there without a copy
  out_.resize(size);
  auto* ids = reinterpret_cast<int32_t*>(out_.data() + frame_header_bytes);
  if (p != 0) {
    std::memcpy(ids, expert_of_pair.data(), 4 * p);
    std::memcpy(ids + p, token_of_pair.data(), 4 * p);
  }
  if (row_of_pair.empty())
    for (size_t i = 0; i < p; ++i) ids[2 * p + i] = static_cast<int32_t>(i);
  else
    std::memcpy(ids + 2 * p, row_of_pair.data(), 4 * p);
  if (precision) std::memcpy(ids + 3 * p, precision_of_pair.data(), 4 * p);
  rows_ = reinterpret_cast<float*>(ids + ints * p);
}

bytes frame_builder::seal() {
  rows_ = nullptr;
  return finish(std::move(out_), header_);
}

bytes encode_frame(const frame& f) {
  if (f.header.kind == frame_kind::error) return encode_error_frame(f.header, f.error_text);
  frame_builder b(f.header, f.expert_of_pair, f.token_of_pair, f.row_of_pair, f.precision_of_pair);
  if (f.rows.size() != size_t{f.header.num_rows} * f.header.hidden)
    throw std::invalid_argument("encode_frame: rows disagree with num_rows/hidden");
  if (!f.rows.empty()) std::memcpy(b.rows(), f.rows.data(), f.rows.size() * sizeof(float));
  return b.seal();
}

bytes encode_error_frame(const frame_header& header, std::string_view text) {
  frame_header h = header;
  h.kind = frame_kind::error;
  h.num_rows = 0;
  h.hidden = 0;
  h.num_pairs = 0;
  bytes out;
  out.reserve(frame_header_bytes + text.size());
  out.resize(frame_header_bytes);
  append(out, std::span<const char>(text.data(), text.size()));
  return finish(std::move(out), h);
}

bytes encode_blob_frame(const frame_header& header, std::span<const std::byte> blob) {
  if ((header.kind != frame_kind::fetch && header.kind != frame_kind::weights) ||
      (header.kind == frame_kind::fetch && !blob.empty()) || header.expert == expert_per_row)
    throw std::invalid_argument(
        "encode_blob_frame: a fetch (no payload) or weights frame naming its expert");
  frame_header h = header;
  h.num_rows = 0;
  h.hidden = 0;
  h.num_pairs = 0;
  bytes out(frame_header_bytes + blob.size());
  if (!blob.empty()) std::memcpy(out.data() + frame_header_bytes, blob.data(), blob.size());
  return finish(std::move(out), h);
}

bytes encode_prefetch_frame(const frame_header& header, std::span<const int32_t> experts) {
  frame_header h = header;
  h.kind = frame_kind::prefetch;
  h.expert = expert_per_row;
  h.num_rows = 0;
  h.hidden = 0;
  h.flags = 0;
  h.num_pairs = static_cast<uint32_t>(experts.size());
  bytes out;
  out.reserve(frame_header_bytes + experts.size_bytes() + message_tail_room);
  out.resize(frame_header_bytes);
  append(out, experts);
  return finish(std::move(out), h);
}

uint64_t checksum_of_parts(std::span<const std::span<const std::byte>> parts) {
  XXH3_state_t* state = XXH3_createState();
  if (state == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(state);
  for (auto p : parts) XXH3_64bits_update(state, p.data(), p.size());
  uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

decode_result decode_frame(std::span<const std::byte> buffer, const frame_limits& limits) {
  if (buffer.size() < frame_header_bytes)
    return fail(frame_errc::truncated,
                "buffer of " + std::to_string(buffer.size()) + " bytes is shorter than the header");
  const std::byte* h = buffer.data();
  frame_header f = read_header(h);
  if (auto r = check_header(h, f, limits); !r) return r;
  const uint64_t have = buffer.size() - frame_header_bytes;
  if (have < f.payload_bytes)
    return fail(frame_errc::truncated, "payload has " + std::to_string(have) + " of " +
                                           std::to_string(f.payload_bytes) + " bytes");
  if (have > f.payload_bytes)
    return fail(frame_errc::length_mismatch,
                std::to_string(have - f.payload_bytes) + " trailing bytes after the payload");
  auto payload = buffer.subspan(frame_header_bytes);
  if (frame_checksum(payload) != f.checksum)
    return fail(frame_errc::bad_checksum, "payload checksum mismatch");
  decode_result r;
  r.frame.header = f;
  if (f.kind == frame_kind::error) {
    r.frame.error_text = {reinterpret_cast<const char*>(payload.data()), payload.size()};
    return r;
  }
  if (f.kind == frame_kind::fetch || f.kind == frame_kind::weights) {
    r.frame.blob = payload;
    return r;
  }
  if (reinterpret_cast<uintptr_t>(payload.data()) % alignof(float) != 0)
    return fail(frame_errc::bad_shape, "buffer is not 4-byte aligned");
  const size_t p = f.num_pairs, n = f.num_rows;
  const auto* ints = reinterpret_cast<const int32_t*>(payload.data());
  if (f.kind == frame_kind::prefetch) {
    r.frame.expert_of_pair = {ints, p};
    for (size_t i = 0; i < p; ++i)
      if (ints[i] < 0 || uint32_t(ints[i]) > limits.max_expert)
        return fail(frame_errc::bad_expert, "prefetch of expert " + std::to_string(ints[i]));
    return r;
  }
  r.frame.expert_of_pair = {ints, p};
  r.frame.token_of_pair = {ints + p, p};
  r.frame.row_of_pair = {ints + 2 * p, p};
  const size_t before_rows = (f.flags & frame_flag_precision) ? 4 * p : 3 * p;
  if (before_rows > 3 * p) r.frame.precision_of_pair = {ints + 3 * p, p};
  r.frame.rows = {reinterpret_cast<const float*>(ints + before_rows), n * size_t{f.hidden}};
  if (auto e = check_rows(r.frame, limits); !e) return e;
  return r;
}

}  // namespace xmesh::transport
