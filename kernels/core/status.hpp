// The result of a kernel call that can fail for reasons outside the caller's control (devices).
#pragma once

#include <string>
#include <utility>

namespace xmesh {

/// Empty message means success. Kernels return it and never throw.
class status {
 public:
  status() = default;
  static status error(std::string message) { return status(std::move(message)); }
  [[nodiscard]] bool ok() const { return message_.empty(); }
  [[nodiscard]] const std::string& message() const { return message_; }

 private:
  explicit status(std::string m) : message_(std::move(m)) {}
  std::string message_;
};

}  // namespace xmesh
