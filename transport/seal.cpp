#include "transport/seal.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace xmesh::transport {
namespace {

// Bound into every tag: a sealed message is valid only in its own direction (a request reflected
// back to its sender as a reply fails) and never in another protocol's context.
constexpr unsigned char request_label[] = "xmesh-data-v1-request";
constexpr unsigned char reply_label[] = "xmesh-data-v1-reply";
constexpr size_t tag_bytes = 16;

struct cipher_ctx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~cipher_ctx() { EVP_CIPHER_CTX_free(ctx); }
};

// Fetched once: naming the cipher at each init would look it up again in OpenSSL 3's provider
// store (a global lock) for every message.
const EVP_CIPHER* aes_256_gcm() {
  static EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return fetched ? fetched : EVP_aes_256_gcm();
}

// One context per thread, re-keyed per message (a few hundred nanoseconds with AES-NI, against
// microseconds for a frame's bytes): contexts are not thread-safe, and messages are sealed on
// many threads (sessions, expert actors) and opened on each back end's receive thread.
EVP_CIPHER_CTX* thread_ctx() {
  thread_local cipher_ctx c;
  if (!c.ctx) throw std::bad_alloc();
  return c.ctx;
}

void put_le(std::byte* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
uint64_t get_le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

// GCM in place over `data` with the 12-byte nonce at `nonce`; `encrypt` writes the tag to `tag`,
// otherwise checks it. False when the tag does not match (or OpenSSL fails).
bool gcm(bool encrypt, seal_direction dir, const sealer::nonce* bound, const data_key& key,
         const std::byte* nonce, std::byte* data, size_t n, std::byte* tag) {
  EVP_CIPHER_CTX* c = thread_ctx();
  auto* k = reinterpret_cast<const unsigned char*>(key.bytes.data());
  auto* iv = reinterpret_cast<const unsigned char*>(nonce);
  auto* d = reinterpret_cast<unsigned char*>(data);
  auto* t = reinterpret_cast<unsigned char*>(tag);
  int len = 0;
  if (EVP_CipherInit_ex(c, aes_256_gcm(), nullptr, k, iv, encrypt ? 1 : 0) != 1) return false;
  const bool request = dir == seal_direction::request;
  if (EVP_CipherUpdate(c, nullptr, &len, request ? request_label : reply_label,
                       request ? sizeof request_label : sizeof reply_label) != 1)
    return false;  // AAD: the direction, and for a reply its request's nonce
  if (bound &&
      EVP_CipherUpdate(c, nullptr, &len, reinterpret_cast<const unsigned char*>(bound->data()),
                       static_cast<int>(bound->size())) != 1)
    return false;
  // EVP takes int lengths: long messages go through in pieces.
  constexpr size_t piece = size_t{1} << 30;
  for (size_t at = 0; at < n; at += piece) {
    const int m = static_cast<int>(std::min(piece, n - at));
    if (EVP_CipherUpdate(c, d + at, &len, d + at, m) != 1) return false;
  }
  if (!encrypt && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, tag_bytes, t) != 1) return false;
  if (EVP_CipherFinal_ex(c, d + n, &len) != 1) return false;  // GCM writes nothing here
  return !encrypt || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, tag_bytes, t) == 1;
}

}  // namespace

data_key make_data_key() {
  data_key k;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(k.bytes.data()), k.bytes.size()) != 1)
    throw std::runtime_error("keygen: no random bytes for the data key");
  return k;
}

void write_data_key(const std::filesystem::path& path, const data_key& key) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string text;
  for (auto b : key.bytes) {
    text += hex[std::to_integer<int>(b) >> 4];
    text += hex[std::to_integer<int>(b) & 15];
  }
  text += '\n';
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
  bool ok = fd >= 0 && ::fchmod(fd, 0600) == 0 &&
            ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  if (fd >= 0) ok = ::close(fd) == 0 && ok;
  if (!ok) throw std::runtime_error(path.string() + ": cannot write");
}

data_key read_data_key(const std::filesystem::path& dir) {
  const auto path = dir / "data.key";
  std::ifstream in(path);
  std::string text;
  data_key k;
  auto nibble = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  bool ok = static_cast<bool>(in >> text) && text.size() == 2 * k.bytes.size();
  for (size_t i = 0; ok && i < k.bytes.size(); ++i) {
    int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    k.bytes[i] = static_cast<std::byte>(hi * 16 + lo);
  }
  if (!ok)
    throw std::runtime_error(path.string() +
                             ": missing or not a data key (64 hex digits; xmesh cluster keygen "
                             "--cluster FILE writes it)");
  return k;
}

sealer::sealer(const data_key& key) : key_(key) {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&session_), sizeof session_) != 1)
    throw std::runtime_error("seal: no random bytes for the session");
}

sealer::nonce sealer::seal(bytes& message, seal_direction dir, const nonce* bound) {
  const uint64_t n = sent_.fetch_add(1, std::memory_order_relaxed);
  const size_t size = message.size();
  message.resize(size + trailer_bytes);
  std::byte* t = message.data() + size;
  put_le(t, session_ + (n >> 32), 8);  // a new session every 2^32 messages: nonces never repeat
  put_le(t + 8, n, 4);
  if (!gcm(true, dir, bound, key_, t, message.data(), size, t + 12))
    throw std::runtime_error("seal: AES-GCM failed");
  nonce out;
  std::memcpy(out.data(), t, out.size());
  return out;
}

std::optional<seal_drop> sealer::open(bytes& message, seal_direction dir, const nonce* bound,
                                      nonce* opened) {
  if (message.size() < trailer_bytes) return seal_drop::forged;
  const size_t size = message.size() - trailer_bytes;
  std::byte* t = message.data() + size;
  if (!gcm(false, dir, bound, key_, t, message.data(), size, t + 12)) return seal_drop::forged;
  // Only an authentic nonce reaches the guard: strangers cannot fill its window.
  if (!seen_.admit(get_le(t, 8), static_cast<uint32_t>(get_le(t + 8, 4))))
    return seal_drop::replayed;
  if (opened) std::memcpy(opened->data(), t, opened->size());
  message.resize(size);
  return std::nullopt;
}

namespace {

struct shared_seal {
  shared_seal(const data_key& key, drop_callback cb) : s(key), on_drop(std::move(cb)) {}
  sealer s;
  drop_callback on_drop;
  bool admit(bytes& message, seal_direction dir, const sealer::nonce* bound = nullptr,
             sealer::nonce* opened = nullptr) {
    auto why = s.open(message, dir, bound, opened);
    if (why && on_drop) on_drop(*why);
    return !why;
  }
};

class sealed_reply final : public reply_handle {
 public:
  sealed_reply(std::shared_ptr<shared_seal> seal, std::shared_ptr<reply_handle> inner,
               sealer::nonce request)
      : seal_(std::move(seal)), inner_(std::move(inner)), request_(request) {}
  void send(bytes message) override {
    seal_->s.seal(message, seal_direction::reply, &request_);
    inner_->send(std::move(message));
  }

 private:
  std::shared_ptr<shared_seal> seal_;
  std::shared_ptr<reply_handle> inner_;
  sealer::nonce request_;  // the reply opens only as the answer to it
};

class sealed_channel final : public channel {
 public:
  sealed_channel(std::shared_ptr<shared_seal> seal, std::unique_ptr<channel> inner)
      : seal_(std::move(seal)), inner_(std::move(inner)) {}
  void request(bytes message,
               std::function<void(bytes reply, std::string error)> on_reply) override {
    const auto sent = seal_->s.seal(message, seal_direction::request);
    inner_->request(std::move(message), [seal = seal_, sent, on_reply = std::move(on_reply)](
                                            bytes reply, std::string error) {
      if (error.empty() && !seal->admit(reply, seal_direction::reply, &sent))
        return on_reply({}, "its reply failed authentication (not sealed with this cluster's key)");
      on_reply(std::move(reply), std::move(error));
    });
  }

 private:
  std::shared_ptr<shared_seal> seal_;
  std::unique_ptr<channel> inner_;
};

class sealed_endpoint final : public endpoint {
 public:
  sealed_endpoint(std::unique_ptr<endpoint> inner, const data_key& key, drop_callback on_drop)
      : inner_(std::move(inner)), seal_(std::make_shared<shared_seal>(key, std::move(on_drop))) {}
  void listen(const std::string& address, request_handler handler) override {
    inner_->listen(address, [seal = seal_, handler = std::move(handler)](
                                bytes message, std::shared_ptr<reply_handle> reply) {
      sealer::nonce request;
      if (!seal->admit(message, seal_direction::request, nullptr, &request))
        return;  // no answer: a stranger learns nothing
      handler(std::move(message), std::make_shared<sealed_reply>(seal, std::move(reply), request));
    });
  }
  void limit_requests(size_t max_bytes) override {
    inner_->limit_requests(max_bytes + sealer::trailer_bytes);
  }
  std::unique_ptr<channel> connect(const std::string& address, int timeout_ms) override {
    return std::make_unique<sealed_channel>(seal_, inner_->connect(address, timeout_ms));
  }
  [[nodiscard]] std::string listen_address() const override { return inner_->listen_address(); }
  [[nodiscard]] std::string name() const override { return inner_->name(); }

 private:
  std::unique_ptr<endpoint> inner_;
  std::shared_ptr<shared_seal> seal_;
};

}  // namespace

std::unique_ptr<endpoint> seal_endpoint(std::unique_ptr<endpoint> inner, const data_key& key,
                                        drop_callback on_drop) {
  return std::make_unique<sealed_endpoint>(std::move(inner), key, std::move(on_drop));
}

}  // namespace xmesh::transport
