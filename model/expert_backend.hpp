// The one seam of the MoE block that varies: how routed experts' outputs are obtained. It is
// asynchronous, so the MoE block computes what it can (the shared expert) while the batch is out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kernels/core/thread_pool.hpp"
#include "model/weights.hpp"

namespace xmesh::model {

/// Why a batch of expert outputs could not be obtained; callers act on the kind (re-send,
/// mark a node dead, fail the request), so it is a code, not only text.
enum class expert_errc : uint8_t {
  ok = 0,
  node_unreachable,  // the transport lost the node (connection refused, reset, timed out)
  bad_frame,         // a reply failed validation or did not answer what was asked
  expert_failed,     // the expert host could not compute (e.g. out of memory)
  deadline_passed,   // no complete answer before the batch's deadline
  not_hosted,        // the node no longer hosts the expert (placement moved on)
};

/// Short stable name of a code ("node_unreachable"), e.g. for metric labels.
[[nodiscard]] std::string_view to_string(expert_errc e);

/// A failed batch: its code and one line naming the node and the cause.
class expert_error : public std::runtime_error {
 public:
  expert_error(expert_errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
  [[nodiscard]] expert_errc code() const { return code_; }

 private:
  expert_errc code_;
};

/// One layer's batch in flight; wait() returns once every output is written.
class expert_batch {
 public:
  virtual ~expert_batch() = default;
  /// Blocks until the outputs are in `y`; throws expert_error when they cannot be obtained.
  virtual void wait() = 0;
};

/// Computes routed experts' outputs for a batch; local kernels or expert actors on other nodes.
class expert_backend {
 public:
  virtual ~expert_backend() = default;
  /// Starts computing, for token t < num_tokens and slot j < k, expert `expert_ids[t*k+j]`
  /// applied to row t of `x` ([num_tokens, hidden]) into row t*k+j of `y` ([num_tokens * k,
  /// hidden]). `x`, `expert_ids` and `y` must stay valid until the batch's wait() returned. An id
  /// of -1 is a slot a routing policy skipped: nothing is computed, its row of `y` is untouched.
  /// `low_precision` (null: none), per slot: 1 computes the slot with a low-precision copy of its
  /// expert (a miss of the sequence's logical cache under a store's fallback); it must stay
  /// valid as `expert_ids` does.
  [[nodiscard]] virtual std::unique_ptr<expert_batch> submit(
      int64_t layer, const float* x, int64_t num_tokens, const int32_t* expert_ids, int32_t k,
      float* y, const uint8_t* low_precision = nullptr) = 0;
};

/// The weights of expert `e` of the layer being computed.
using expert_weights_of = std::function<const kernels::expert_weights*(int32_t e)>;

/// Computes `slots` of a batch (token = slot / k, expert = expert_ids[slot]) into `y` (row per
/// slot), all experts at once on `pool` like the engine: rows gathered per expert, ascending.
void compute_expert_slots(std::span<const int32_t> slots, const float* x, const int32_t* expert_ids,
                          int32_t k, int64_t hidden, const expert_weights_of& weights_of,
                          kernels::thread_pool& pool, float* y);

/// Runs every expert in this process with the expert kernels (computed inside submit()).
class local_expert_backend final : public expert_backend {
 public:
  local_expert_backend(const model_weights& weights, kernels::thread_pool& pool)
      : weights_(weights), pool_(pool) {}
  /// `low_precision` is not read: with a store, the store marks its own misses (the same ones,
  /// as its cache and a routing policy's follow one rule), and without one there is no copy.
  std::unique_ptr<expert_batch> submit(int64_t layer, const float* x, int64_t num_tokens,
                                       const int32_t* expert_ids, int32_t k, float* y,
                                       const uint8_t* low_precision = nullptr) override;
  /// Computes from `store`'s resident copies, token by token (each token's misses loaded
  /// first), instead of the model files.
  void set_store(class expert_store* store) { store_ = store; }

 private:
  const model_weights& weights_;
  kernels::thread_pool& pool_;
  class expert_store* store_ = nullptr;
};

}  // namespace xmesh::model
