// parallel_for: OpenMP over an index range, entered only when the work is worth the threads.
#pragma once
#include <cstdint>

namespace lowrank::cpu {

// Work below this many elements runs on the calling thread: waking the team costs microseconds.
constexpr int64_t kParallelMinElems = 1 << 15;

// Calls f(i) for i in [0, n), on OpenMP threads when `parallel`. An `if (false)` clause is not
// enough: libgomp still builds a team (an allocation and futex calls) for every region it enters.
template <class F>
void parallel_for(int64_t n, bool parallel, F&& f) {
  if (parallel && n > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
  } else {
    for (int64_t i = 0; i < n; ++i) f(i);
  }
}

}  // namespace lowrank::cpu
