// How a transport's I/O thread is scheduled, and which threads may do its I/O in its stead.
#pragma once

#include <pthread.h>
#include <sched.h>

#include "kernels/core/thread_role.hpp"

namespace xmesh::transport {

/// Whether the calling thread runs below an I/O thread whose nice value is `io_nice`. Such a
/// thread (an expert node's compute thread: kernels::enter_compute_thread) must not hold the
/// I/O thread's lock: preempted there, as its own send's wake-up of the peer's receive thread
/// often has it, it would keep the I/O thread from the next frame for as long (priority
/// inversion; one frame in ten waited hundreds of microseconds). It hands its I/O over instead.
inline bool below_io_priority(int io_nice) { return kernels::thread_nice() > io_nice; }

/// Names the calling thread, a transport's I/O thread (for ps, top, perf sched and the tests), and
/// returns its nice value.
inline int enter_io_thread(const char* name) {
  pthread_setname_np(pthread_self(), name);
  return kernels::thread_nice();
}

/// Called by an endpoint's I/O thread when the endpoint starts to listen: the thread is scheduled
/// SCHED_BATCH from then on (its nice value kept), so a request's arrival no longer preempts the
/// thread running on the core it wakes on. On two cores shared by a head and two expert nodes,
/// that was often the head's session between its frames to the two nodes, whose second frame
/// then waited 150-600 us behind the expert computation the first had started (perf sched). A
/// SCHED_BATCH thread still takes an idle core at once, and otherwise runs when the running
/// thread blocks or ends its slice. Replies are awaited, so the threads of an endpoint that only
/// connects (a head's) keep preempting: as SCHED_BATCH too, decode over UCX gained half as much
/// (one paired run).
inline void serve_without_preempting() {
  sched_param param{};
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
}

}  // namespace xmesh::transport
