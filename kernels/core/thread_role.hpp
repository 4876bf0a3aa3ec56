// What a thread is for, made visible to the kernel's scheduler and to people (ps, top, tests).
#pragma once

namespace xmesh::kernels {

/// Marks the calling thread as one that computes experts beside threads that move frames: it is
/// named "xmesh.compute" and, the first time, its priority is lowered by `nice` (0: kept).
///
/// Why: a node's experts are actors on a pool of workers, so its cores are oversubscribed by
/// design, and a frame handed to a receive thread would otherwise wait behind a 300 us expert
/// computation that the scheduler let in first (measured: one frame in ten on a 2-core VM). Frame
/// movers at the default priority take the core at once; they run for microseconds.
void enter_compute_thread(int nice);

}  // namespace xmesh::kernels
