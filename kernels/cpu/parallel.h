// The CPU backend's one thread pool: parallel_for / parallel_chunks over an index range, entered
// only when the work is worth the threads. OpenBLAS runs single-threaded and large GEMMs are split
// over this pool (kernels/cpu/gemm.cpp), so no second pool spins against it; idle workers spin a
// few microseconds, then sleep on a futex (a passive wait policy).
#pragma once
#include <cstdint>
#include <type_traits>

namespace lowrank::cpu {

// Work below this many elements runs on the calling thread: waking a worker costs microseconds.
constexpr int64_t kParallelMinElems = 1 << 15;

// Threads a parallel region uses now (the caller included); 1 inside a region, which runs nested
// regions serially.
int parallel_threads();

// Runs body(ctx, begin, end, part) for parts static contiguous chunks of [0, n) on the pool,
// part 0 on the caller; part p's range depends only on (n, parts), so results that combine
// per-part partials in part order do not depend on scheduling.
void parallel_run(int64_t n, int parts, void (*body)(void*, int64_t, int64_t, int), void* ctx);

// f(begin, end, part) over parallel_threads() chunks when `parallel`, else f(0, n, 0) here.
// Returns the number of parts used.
template <class F>
int parallel_chunks(int64_t n, bool parallel, F&& f) {
  const int parts = parallel && n > 1 ? parallel_threads() : 1;
  if (parts <= 1) {
    f(int64_t{0}, n, 0);
    return 1;
  }
  using Fn = std::remove_reference_t<F>;
  parallel_run(
      n, parts, [](void* c, int64_t b, int64_t e, int p) { (*static_cast<Fn*>(c))(b, e, p); },
      const_cast<void*>(static_cast<const void*>(&f)));
  return parts;
}

// Calls f(i) for i in [0, n), on the pool's threads when `parallel`.
template <class F>
void parallel_for(int64_t n, bool parallel, F&& f) {
  parallel_chunks(n, parallel, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
}

}  // namespace lowrank::cpu
