// What a thread is for, made visible to the kernel's scheduler and to people (ps, top, tests).
#pragma once

namespace xmesh::kernels {

/// How a thread that computes experts beside threads that move frames runs.
struct compute_role {
  /// How far its priority is lowered (0: kept). A node's experts are actors on a pool of
  /// workers, so its cores are oversubscribed by design, and a frame handed to a receive thread
  /// would otherwise wait behind a 300 us expert computation that the scheduler let in first
  /// (measured: one frame in ten on a 2-core VM). Frame movers at the default priority take the
  /// core at once; they run for microseconds.
  int nice = 0;
  /// Bound to one CPU, the process's compute threads in turn over the CPUs it may use. Left to
  /// the scheduler, two threads sharing a frame's experts often queued on one core while the
  /// other idled once the other node's threads were done (a busy thread that ran recently is
  /// not moved); bound, a node's threads have a core each whenever the cores are free.
  bool pin = false;
};

/// Marks the calling thread as one that computes experts: the first time, it is named
/// "xmesh.compute", scheduled SCHED_BATCH (its wake-ups preempt no one) and takes `role`.
void enter_compute_thread(const compute_role& role);

}  // namespace xmesh::kernels
