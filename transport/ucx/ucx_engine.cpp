#include "transport/ucx/ucx_engine.hpp"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "transport/io_priority.hpp"

namespace xmesh::transport::ucx {

thread_local ucx_engine* ucx_engine::acting_as_ = nullptr;

// -- UCX callbacks: they only record work; the progress loop acts on it after progress ------

ucs_status_t ucx_engine::am_cb(void* arg, const void* header, size_t header_length, void* data,
                               size_t length, const ucp_am_recv_param_t* param) {
  auto* ctx = static_cast<am_ctx*>(arg);
  return ctx->engine->on_am(ctx->id, header, header_length, data, length, param);
}

void ucx_engine::send_done(void* request, ucs_status_t, void* user_data) {
  // A failed send also fails its endpoint, whose error handler fails the pending requests.
  auto* op = static_cast<send_op*>(user_data);
  --op->engine->sends_in_flight_;
  delete op;
  ucp_request_free(request);
}

void ucx_engine::rndv_done(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* op = static_cast<recv_op*>(user_data);
  if (status == UCS_OK) {
    op->engine->deferred_.emplace_back([op] {
      std::unique_ptr<recv_op> owned(op);
      op->engine->deliver(op->am_id, op->from_conn, op->header, std::move(op->data));
    });
  } else {
    delete op;
  }
  ucp_request_free(request);
}

void ucx_engine::ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* e = static_cast<ucx_engine*>(arg);
  e->deferred_.emplace_back([e, ep, status] { e->on_ep_error(ep, status); });
}

ucs_status_t ucx_engine::on_am(unsigned am_id, const void* header, size_t header_length, void* data,
                               size_t length, const ucp_am_recv_param_t* param) {
  if (header_length != sizeof(am_header)) return UCS_OK;  // not ours: drop
  if (length > max_message_bytes) return UCS_OK;          // too big: dropped, nothing allocated
  if (am_id == am_request && length > request_limit_) return UCS_OK;
  am_header h;
  std::memcpy(&h, header, sizeof h);
  uint64_t conn = 0;
  if (am_id == am_request || am_id == am_ping) {
    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)) return UCS_OK;
    auto it = ep_index_.find(param->reply_ep);
    if (it == ep_index_.end()) {
      // A new peer: UCX made the endpoint back to it from the request (worker-address mode).
      if (!handler_) return UCS_OK;
      conn = next_conn_id_++;
      ep_index_[param->reply_ep] = {false, conn};
      server_eps_[conn] = param->reply_ep;
    } else if (it->second.client) {
      return UCS_OK;
    } else {
      conn = it->second.id;
    }
  }
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    // NOTE: ucp_am_recv_data_nbx is started after progress returns, outside this callback.
    rndv_.emplace_back(data, new recv_op{this, am_id, conn, h, bytes(length)});
    return UCS_INPROGRESS;
  }
  // Eager: `data` is valid only during this callback.
  deferred_.emplace_back([this, am_id, conn, h, b = copy_bytes(data, length)]() mutable {
    deliver(am_id, conn, h, std::move(b));
  });
  return UCS_OK;
}

// -- progress thread ----------------------------------------------------------------------

void ucx_engine::run() {
  enter_io_thread("xmesh.ucx");
  acting_as_ = this;
  std::unique_lock worker(io_mutex_);
  while (!stopping_) {
    for (auto& task : queue_.take_all()) {
      if (task) task();
    }
    progress();
    if (!ready_.empty()) {
      run_ready(worker);
      continue;  // the callbacks may have posted work
    }
    if (stopping_) break;
    const auto idle_since = std::chrono::steady_clock::now();
    if (!spin(spin_.spin_for())) wait_for_events(worker);
    spin_.record_gap(std::chrono::steady_clock::now() - idle_since);
  }
  shutdown_io();
}

void ucx_engine::run_ready(std::unique_lock<std::mutex>& worker) {
  auto ready = std::move(ready_);
  ready_.clear();
  acting_as_ = nullptr;  // unlocked, this thread posts like any other
  worker.unlock();
  for (auto& callback : ready) callback();
  worker.lock();
  acting_as_ = this;
}

void ucx_engine::progress() {
  if (!worker_) return;
  for (;;) {
    while (ucp_worker_progress(worker_) != 0) {
    }
    if (rndv_.empty() && deferred_.empty()) break;
    auto rndv = std::move(rndv_);
    rndv_.clear();
    for (auto& [desc, op] : rndv) start_rndv(desc, op);
    auto deferred = std::move(deferred_);
    deferred_.clear();
    for (auto& task : deferred) task();
  }
  std::erase_if(closing_, [](void* r) {
    if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
    ucp_request_free(r);
    return true;
  });
}

bool ucx_engine::spin(spin_policy::duration budget) {
  if (budget <= spin_policy::duration::zero() || !worker_) return false;
  const auto until = std::chrono::steady_clock::now() + budget;
  while (std::chrono::steady_clock::now() < until) {
    if (ucp_worker_progress(worker_) != 0 || queue_.has_items() || stopping_) return true;
  }
  return false;
}

void ucx_engine::wait_for_events(std::unique_lock<std::mutex>& worker) {
  if (worker_ && ucp_worker_arm(worker_) == UCS_ERR_BUSY) return;  // more to progress first
  pollfd fds[2] = {{queue_.fd(), POLLIN, 0}, {worker_fd_, POLLIN, 0}};
  const int timeout_ms = closing_.empty() ? -1 : 10;
  worker.unlock();  // other threads may post sends meanwhile (post)
  ::poll(fds, worker_ ? 2 : 1, timeout_ms);
  worker.lock();
  if (fds[0].revents & POLLIN) queue_.drain_wakeups();
}

void ucx_engine::start_rndv(void* desc, recv_op* op) {
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_DATATYPE;
  p.cb.recv_am = rndv_done;
  p.user_data = op;
  p.datatype = ucp_dt_make_contig(1);
  auto r = ucp_am_recv_data_nbx(worker_, desc, op->data.data(), op->data.size(), &p);
  if (r == nullptr) {
    std::unique_ptr<recv_op> owned(op);
    deliver(op->am_id, op->from_conn, op->header, std::move(op->data));
  } else if (UCS_PTR_IS_ERR(r)) {
    delete op;  // the sender's ep fails too; its requests fail there
  }
}

void ucx_engine::ensure_worker(const ucx_address& a) {
  if (worker_) return;
  create_context(a, context_, worker_);
  for (auto& ctx : am_ctx_) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = ctx.id;
    hp.cb = am_cb;
    hp.arg = &ctx;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    if (auto st = ucp_worker_set_am_recv_handler(worker_, &hp); st != UCS_OK)
      throw std::runtime_error(status_message("ucp_worker_set_am_recv_handler", st));
  }
  if (auto st = ucp_worker_get_efd(worker_, &worker_fd_); st != UCS_OK)
    throw std::runtime_error(status_message("ucp_worker_get_efd", st));
}

ucs_status_t ucx_engine::am_send(ucp_ep_h ep, unsigned id, am_header h, bytes data,
                                 bool want_reply_ep) {
  auto* op = new send_op{this, std::move(data), h};
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = send_done;
  p.user_data = op;
  p.flags = want_reply_ep ? UCP_AM_SEND_FLAG_REPLY : 0;
  auto r =
      ucp_am_send_nbx(ep, id, &op->header, sizeof op->header, op->data.data(), op->data.size(), &p);
  if (r == nullptr) {
    delete op;
    return UCS_OK;
  }
  if (UCS_PTR_IS_ERR(r)) {
    delete op;
    return UCS_PTR_STATUS(r);
  }
  ++sends_in_flight_;
  return UCS_INPROGRESS;
}

ucp_ep_h ucx_engine::create_ep(ucp_ep_params_t& p, bool client, uint64_t id) {
  p.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p.err_handler.cb = ep_error_cb;
  p.err_handler.arg = this;
  ucp_ep_h ep = nullptr;
  if (auto st = ucp_ep_create(worker_, &p, &ep); st != UCS_OK)
    throw std::runtime_error(status_message("ucp_ep_create", st));
  ep_index_[ep] = {client, id};
  return ep;
}

void ucx_engine::close_ep(ucp_ep_h ep) {
  ep_index_.erase(ep);
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;  // never wait on a peer that may be gone
  auto r = ucp_ep_close_nbx(ep, &p);
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) closing_.push_back(r);
}

void ucx_engine::drop_client(uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  if (it->second.ep) close_ep(it->second.ep);
  clients_.erase(it);
}

void ucx_engine::on_ep_error(ucp_ep_h ep, ucs_status_t status) {
  auto it = ep_index_.find(ep);
  if (it == ep_index_.end()) return;  // already closed by us
  const ep_info info = it->second;
  if (info.client) {
    auto c = clients_.find(info.id);
    if (c != clients_.end()) {
      auto st = c->second.state;
      close_ep(ep);
      c->second.ep = nullptr;
      st->pending.fail_all(status_message("peer " + st->address + " lost", status), true);
    }
  } else {
    server_eps_.erase(info.id);
    close_ep(ep);
  }
}

void ucx_engine::deliver(unsigned am_id, uint64_t conn, am_header h, bytes data) {
  if (am_id == am_request) {
    // (handler_ changes only on this thread, so the callback may read it unlocked.)
    if (handler_)
      ready_.emplace_back(
          [this, data = std::move(data),
           reply = std::make_shared<ucx_reply>(weak_from_this(), conn, h)]() mutable {
            if (handler_) invoke_handler(handler_, std::move(data), std::move(reply));
          });
  } else if (am_id == am_ping) {
    if (auto it = server_eps_.find(conn); it != server_eps_.end())
      am_send(it->second, am_pong, h, {}, false);
  } else if (auto c = clients_.find(h.channel_id); c != clients_.end()) {
    if (auto cb = c->second.state->pending.take(h.request_id))
      ready_.emplace_back(
          [cb = std::move(cb), data = std::move(data)]() mutable { cb(std::move(data), {}); });
  }
}

}  // namespace xmesh::transport::ucx
