// Which threads may do a transport's I/O in its I/O thread's stead.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace xmesh::transport {

/// The calling thread's nice value (0 when it cannot be read).
inline int thread_nice() {
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  return errno == 0 ? nice : 0;
}

/// Whether the calling thread runs below an I/O thread whose nice value is `io_nice`. Such a
/// thread (an expert node's compute thread: kernels::enter_compute_thread) must not hold the
/// I/O thread's lock: preempted there, as its own send's wake-up of the peer's receive thread
/// often has it, it would keep the I/O thread from the next frame for as long (priority
/// inversion; one frame in ten waited hundreds of microseconds). It hands its I/O over instead.
inline bool below_io_priority(int io_nice) { return thread_nice() > io_nice; }

}  // namespace xmesh::transport
