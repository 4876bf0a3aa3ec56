// Which threads may do a transport's I/O in its I/O thread's stead.
#pragma once

#include "kernels/core/thread_role.hpp"

namespace xmesh::transport {

/// Whether the calling thread runs below an I/O thread whose nice value is `io_nice`. Such a
/// thread (an expert node's compute thread: kernels::enter_compute_thread) must not hold the
/// I/O thread's lock: preempted there, as its own send's wake-up of the peer's receive thread
/// often has it, it would keep the I/O thread from the next frame for as long (priority
/// inversion; one frame in ten waited hundreds of microseconds). It hands its I/O over instead.
inline bool below_io_priority(int io_nice) { return kernels::thread_nice() > io_nice; }

}  // namespace xmesh::transport
