// The authenticated data plane: every message between nodes is sealed with AES-256-GCM under the
// cluster's data key, whatever the back end (zmq, ucx). A message that fails to open (a stranger's,
// or one changed on the way) or that was opened before (a captured message sent again) is dropped
// before any parser sees it. One mechanism for both back ends, and 3x cheaper than ZeroMQ's CURVE
// on this project's machines (AES-NI against CURVE's software cipher; docs/security.md).
//
// A sealed message is the ciphertext of the plaintext, in place and of the same length, followed
// by a 28-byte trailer: the sender's session (u64) and counter (u32), which form the GCM nonce,
// and the tag. A sender draws a random session at start and counts up from it, so no nonce repeats
// under one key; a receiver admits each (session, counter) once (replay_guard).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "transport/replay_guard.hpp"
#include "transport/transport.hpp"

namespace xmesh::transport {

/// The cluster's data-plane key: 32 random bytes, `data.key` (hex) in the keys folder.
struct data_key {
  std::array<std::byte, 32> bytes{};
};

/// A fresh key from the system's random source.
data_key make_data_key();
/// Writes `key` to `path` as 64 hex digits, readable only by its owner (0600).
void write_data_key(const std::filesystem::path& path, const data_key& key);
/// The key `xmesh cluster keygen` wrote into `dir`; throws naming the file when it is missing or
/// not a key.
data_key read_data_key(const std::filesystem::path& dir);

/// Requests (head to expert node) and replies are sealed apart, so neither passes for the other.
enum class seal_direction { request, reply };

/// Why a received message was dropped unopened.
enum class seal_drop { forged, replayed };
/// Told of every dropped message (on the receiving back end's thread).
using drop_callback = std::function<void(seal_drop)>;

/// Seals and opens messages under one key. Thread-safe.
class sealer {
 public:
  static constexpr size_t trailer_bytes = 8 + 4 + 16;
  static_assert(trailer_bytes <= message_tail_room);

  /// A message's nonce: its sender's session and counter, as in its trailer.
  using nonce = std::array<std::byte, 12>;

  explicit sealer(const data_key& key);

  /// Encrypts `message` in place and appends the trailer; returns its nonce. A reply is sealed
  /// `bound` to its request's nonce, so it opens only as the answer to that request (never as
  /// one to another request, of this run or an earlier one).
  nonce seal(bytes& message, seal_direction dir, const nonce* bound = nullptr);
  /// Authenticates and decrypts `message` in place and removes the trailer, giving its nonce in
  /// `opened` (when not null); on failure leaves it in an unspecified state and says why.
  [[nodiscard]] std::optional<seal_drop> open(bytes& message, seal_direction dir,
                                              const nonce* bound = nullptr,
                                              nonce* opened = nullptr);

 private:
  data_key key_;
  uint64_t session_;               // random at construction
  std::atomic<uint64_t> sent_{0};  // messages sealed; the nonce is (session_ + sent / 2^32, sent)
  replay_guard seen_;
};

/// `inner` with every message sealed on the way out and opened on the way in; `on_drop` (may be
/// empty) hears of each message dropped. Replies are bound to their requests. A reply that fails
/// to open fails its request.
std::unique_ptr<endpoint> seal_endpoint(std::unique_ptr<endpoint> inner, const data_key& key,
                                        drop_callback on_drop = {});

}  // namespace xmesh::transport
