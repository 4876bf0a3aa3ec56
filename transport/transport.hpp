// The data plane's interface: moves whole frames (bytes) between nodes, request/response style.
// Back ends: local (in-process), zmq (tcp://, ipc://), ucx (ucp active messages).
#pragma once

#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xmesh::transport {

namespace detail {
/// Frames at least this big that a back end received in its own buffer are adopted, not copied.
inline constexpr size_t adopt_min_bytes = size_t{64} << 10;
/// The block adopt_bytes() armed on this thread, handed out once by the next allocation of
/// exactly `size` bytes; nullptr otherwise.
void* take_adopted(size_t size) noexcept;
/// Runs and forgets the release of an adopted block; false when `p` was not adopted.
bool release_adopted(void* p) noexcept;
}  // namespace detail

/// Leaves new elements uninitialised: receive buffers are filled right after they are sized, and
/// zero-filling a 1 MiB frame first costs as much as a memory copy of it. It can also hand a
/// vector a block some library owns (adopt_bytes), and gives it back to that library when freed.
template <class T>
struct default_init_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = default_init_allocator<U>;
  };
  using std::allocator<T>::allocator;
  T* allocate(size_t n) {
    if (void* p = detail::take_adopted(n * sizeof(T))) return static_cast<T*>(p);
    return std::allocator<T>::allocate(n);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) >= detail::adopt_min_bytes && detail::release_adopted(p)) return;
    std::allocator<T>::deallocate(p, n);
  }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// A message's bytes; back ends move them without copying where they can.
using bytes = std::vector<std::byte, default_init_allocator<std::byte>>;

/// A copy of `size` bytes at `data`: one memcpy into uninitialised memory. Use it rather than
/// bytes' copy or range constructors, which construct element by element (2x slower per MiB).
inline bytes copy_bytes(const void* data, size_t size) {
  bytes out(size);
  if (size != 0) std::memcpy(out.data(), data, size);
  return out;
}

/// The `size` bytes at `data`, owned by a library (e.g. a received ZeroMQ message), as `bytes`
/// without copying them: `release` runs once the bytes are freed (on any thread). Blocks under
/// detail::adopt_min_bytes are copied instead and released at once.
bytes adopt_bytes(void* data, size_t size, std::function<void()> release);

/// Room frames reserve after their bytes, so that the data plane's seal (seal.hpp) appends its
/// trailer without moving them.
inline constexpr size_t message_tail_room = 32;

/// Largest message any back end accepts from the network; bigger ones are dropped before any
/// buffer is allocated for them.
inline constexpr size_t max_message_bytes = size_t{512} << 20;

/// The server side's way to answer one received message.
class reply_handle {
 public:
  virtual ~reply_handle() = default;
  /// Sends `message` back to the peer the request came from; callable from any thread, once.
  virtual void send(bytes message) = 0;
};

/// Called on the back end's receive thread for every message that arrives at a listener.
using request_handler = std::function<void(bytes message, std::shared_ptr<reply_handle> reply)>;

/// Runs a request handler; an exception escaping it (a handler bug, or memory exhaustion) is
/// logged and the message dropped, so the receive thread and the node keep running.
void invoke_handler(const request_handler& handler, bytes message,
                    std::shared_ptr<reply_handle> reply);

/// A connection from a client (a head) to one server (an expert node).
class channel {
 public:
  virtual ~channel() = default;
  /// Sends a request; `on_reply` runs on the receive thread with the reply's bytes, or with an
  /// empty message and a non-empty error when the peer is gone. Callable from any thread.
  virtual void request(bytes message,
                       std::function<void(bytes reply, std::string error)> on_reply) = 0;
};

/// One node's endpoint for one back end.
class endpoint {
 public:
  virtual ~endpoint() = default;
  /// Requests larger than `max_bytes` (a node derives it from its model's shapes) are dropped
  /// by the listener before anything is allocated for them; call before listen(). Default:
  /// max_message_bytes. Replies are not limited here.
  virtual void limit_requests(size_t max_bytes) { (void)max_bytes; }
  /// Starts serving `handler` on `address` (back-end syntax, e.g. "tcp://127.0.0.1:5555").
  virtual void listen(const std::string& address, request_handler handler) = 0;
  /// Connects to a listener; throws std::runtime_error naming the address when unreachable
  /// within `timeout_ms`.
  virtual std::unique_ptr<channel> connect(const std::string& address, int timeout_ms) = 0;
  /// The address listen() bound, with the real port when port 0 (or `*`) was asked; empty
  /// before listen().
  [[nodiscard]] virtual std::string listen_address() const { return {}; }
  /// Back-end name: "local", "zmq" or "ucx".
  [[nodiscard]] virtual std::string name() const = 0;
};

}  // namespace xmesh::transport
