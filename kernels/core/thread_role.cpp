#include "kernels/core/thread_role.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace xmesh::kernels {

void enter_compute_thread(int nice) {
  thread_local bool entered = false;
  if (entered) return;
  entered = true;
  pthread_setname_np(pthread_self(), "xmesh.compute");  // for ps, top and the tests
  // Relative to the thread's own priority: lowering needs no privilege, and a failure (a
  // sandbox without the call) only leaves the priority as it was.
  if (nice <= 0) return;
  const auto self = static_cast<id_t>(gettid());
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, self);
  if (errno == 0) (void)setpriority(PRIO_PROCESS, self, now + nice);
}

}  // namespace xmesh::kernels
