#include "kernels/core/thread_role.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace xmesh::kernels {

namespace {

// The next of the CPUs this thread may run on, in turn across the process's compute threads.
// (A failure leaves the thread unbound: binding is an optimisation.)
void bind_to_next_cpu() {
  static std::atomic<int> next{0};
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  const int count = CPU_COUNT(&allowed);
  if (count < 2) return;
  int k = next++ % count;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed) || k-- > 0) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    return;
  }
}

}  // namespace

void enter_compute_thread(const compute_role& role) {
  thread_local bool entered = false;
  if (entered) return;
  entered = true;
  pthread_setname_np(pthread_self(), "xmesh.compute");  // for ps, top and the tests
  if (role.pin) bind_to_next_cpu();
  // SCHED_BATCH, like the transports' I/O threads: a woken compute thread waits for the running
  // thread to block or end its slice instead of preempting it. A receive thread that woke the
  // first of its node's compute threads on its own core was preempted by it in one run in ten,
  // mid-frame, before waking the others, and waited out a whole expert slice (perf sched:
  // 74 and 60 of the two nodes' ~700 receive-thread runs ended preempted; 4 and 1 as batch).
  // Paired decode runs over UCX: 1.020x and 1.024x (12 rounds each).
  sched_param param{};
  (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
  // Relative to the thread's own priority: lowering needs no privilege, and a failure (a
  // sandbox without the call) only leaves the priority as it was.
  if (role.nice <= 0) return;
  const auto self = static_cast<id_t>(gettid());
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, self);
  if (errno == 0) (void)setpriority(PRIO_PROCESS, self, now + role.nice);
}

}  // namespace xmesh::kernels
