// 2 threads against 1 in one process: the same work timed with set_num_threads(2) and (1) in
// alternating pairs (bench/paired.h), so both see the same machine load. Every ...ThreadsPaired
// row in bench/ uses it; bench/threads_scaling.sh reads their counters into one table.
#pragma once
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bench/paired.h"
#include "core/threads.h"

namespace lowrank::bench {

// Times f() at 2 threads against 1 thread. A timed sample is `calls` back-to-back calls, as many
// as make one 1-thread sample at least `min_sample_s` (a microsecond op alone would time the clock
// and the pool's restart more than the op). Counters, per call of f: t2/t1 (the median of the
// per-pair wall ratios, 2 threads over 1; < 1 means the second thread helps), t2/t1_q1 and
// t2/t1_q3 (its quartiles: above 1 at q1, three pairs in four were slower with 2 threads),
// cpu_time_ratio (process CPU, all threads), t2_us, t1_us, t2_cpu_us, t1_cpu_us, pairs, calls.
// Returns the medians per call (fused: 2 threads) and leaves the thread count at the default.
// Register with UseManualTime()->Iterations(1).
template <class F>
PairedMedians run_thread_pairs(benchmark::State& state, F&& f, double max_total_s, double min_sample_s = 5e-3) {
  auto none = [] {};
  set_num_threads(2);
  time_once(f, none);  // warm-up at both counts; the 1-thread one sizes the samples
  set_num_threads(1);
  const double one = time_once(f, none).wall;
  const int64_t calls = one >= min_sample_s ? 1 : static_cast<int64_t>(std::ceil(min_sample_s / std::max(one, 1e-9)));
  auto timed = [&](bool two) {
    set_num_threads(two ? 2 : 1);
    return time_once(
        [&] {
          for (int64_t i = 0; i < calls; ++i) f();
        },
        none);
  };
  PairedMedians m = collect_pairs(state, timed, max_total_s, false);
  set_num_threads(0);
  for (double* t : {&m.fused, &m.unfused, &m.fused_cpu, &m.unfused_cpu}) *t /= static_cast<double>(calls);
  set_pair_counters(state, m, {"t2", "t1"});
  state.counters["t2/t1_q1"] = m.ratio_q1;
  state.counters["t2/t1_q3"] = m.ratio_q3;
  state.counters["calls"] = static_cast<double>(calls);
  return m;
}

}  // namespace lowrank::bench
