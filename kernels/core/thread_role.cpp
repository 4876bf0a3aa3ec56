#include "kernels/core/thread_role.hpp"

#include <pthread.h>

namespace xmesh::kernels {

void enter_compute_thread(int nice) {
  thread_local bool entered = false;
  if (entered) return;
  entered = true;
  pthread_setname_np(pthread_self(), "xmesh.compute");  // for ps, top and the tests
  // Relative to the thread's own priority: lowering needs no privilege, and a failure (a
  // sandbox without the call) only leaves the priority as it was.
  if (nice > 0) (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), thread_nice() + nice);
}

}  // namespace xmesh::kernels
