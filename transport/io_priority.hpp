// How a transport's I/O threads are named and scheduled.
#pragma once

#include <pthread.h>
#include <sched.h>

namespace xmesh::transport {

/// The scheduling policy of every transport I/O thread (enter_io_thread says why).
inline constexpr int io_thread_policy = SCHED_BATCH;

/// Called by a transport's I/O thread as it starts: names it (for ps, top, perf sched and the
/// tests) and schedules it SCHED_BATCH, its nice value kept (libzmq's own I/O threads get the
/// same through ZMQ_THREAD_SCHED_POLICY). A woken SCHED_NORMAL thread preempts the one running
/// on the core it wakes on; a SCHED_BATCH thread takes an idle core at once and otherwise runs
/// when the running thread blocks or ends its slice. On two cores shared by a head and two
/// expert nodes, preempting arrivals cost on both sides (perf sched, bench/cluster/timeline.py):
///   - a frame's arrival at the first expert node preempted the head's session before its frame
///     to the other node, which then waited 150-600 us behind the expert computation the first
///     had started;
///   - a reply's arrival at the head preempted the expert node's compute thread inside its send,
///     holding the node's I/O lock (priority inversion), so the node's next frame waited for it.
/// Whoever has something to send sends it while the I/O thread sleeps (ucx_engine::post,
/// zmq_engine::send_on), an expert node's compute thread too: handed to a batch I/O thread, a
/// reply waited for that thread to get a core (15 us at the median, 96 us on average, 337 us at
/// p90). Paired decode runs, step by step: listeners' threads batch 1.04x (UCX); then replies
/// sent by the compute threads 1.03x (UCX) and 1.06x (ZeroMQ); then heads' threads batch too
/// 1.09x (UCX) and 1.08x (ZeroMQ). The last two together, against the build before them: 1.05x
/// (UCX) and 1.06x (ZeroMQ).
inline void enter_io_thread(const char* name) {
  pthread_setname_np(pthread_self(), name);
  sched_param param{};
  pthread_setschedparam(pthread_self(), io_thread_policy, &param);
}

}  // namespace xmesh::transport
