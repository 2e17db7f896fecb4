// Paired fused-vs-unfused timing: both variants back to back inside one benchmark iteration, in
// alternating order, so both see the same machine load. The medians of the per-pair ratios are
// the figures that survive a shared, noisy machine, where separately timed benchmarks drift apart.
#pragma once
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace lowrank::bench {

inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

struct Timing {
  double wall = 0.0;  // seconds
  double cpu = 0.0;   // process CPU seconds, all threads
};

// Wall and process-CPU seconds of f(); `sync` runs before and after (a device synchronise).
template <class F, class Sync>
Timing time_once(F&& f, Sync&& sync) {
  sync();
  const double c0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  sync();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), process_cpu_seconds() - c0};
}

struct PairedMedians {
  double ratio = 0.0, cpu_ratio = 0.0;  // fused / unfused, wall and CPU
  double fused = 0.0, unfused = 0.0, fused_cpu = 0.0;
  size_t pairs = 0;
};

// Runs pairs (timed(true) is the fused variant) until there are enough for a median: at least 9
// and 1 s, or at least 3 once `max_total_s` has passed (large shapes), then sets the iteration
// time and the counters fused/unfused, cpu_time_ratio, fused_us, unfused_us, fused_cpu_us, pairs.
// Register the benchmark with UseManualTime()->Iterations(1).
template <class Timed>
PairedMedians run_pairs(benchmark::State& state, Timed&& timed, double max_total_s) {
  timed(true);  // warm up both
  timed(false);
  std::vector<double> ratios, cpu_ratios, fused, unfused, fused_cpu;
  bool fused_first = true;
  for (auto _ : state) {
    double total = 0.0;
    while (!((ratios.size() >= 9 && total >= 1.0) || (ratios.size() >= 3 && total >= max_total_s))) {
      Timing f, u;
      if (fused_first) {
        f = timed(true);
        u = timed(false);
      } else {
        u = timed(false);
        f = timed(true);
      }
      fused_first = !fused_first;
      total += f.wall + u.wall;
      ratios.push_back(f.wall / u.wall);
      cpu_ratios.push_back(u.cpu > 0 ? f.cpu / u.cpu : 0.0);
      fused.push_back(f.wall);
      unfused.push_back(u.wall);
      fused_cpu.push_back(f.cpu);
    }
    state.SetIterationTime(total);
  }
  PairedMedians m{median(ratios), median(cpu_ratios), median(fused), median(unfused), median(fused_cpu), ratios.size()};
  state.counters["fused/unfused"] = m.ratio;
  state.counters["cpu_time_ratio"] = m.cpu_ratio;
  state.counters["fused_us"] = 1e6 * m.fused;
  state.counters["unfused_us"] = 1e6 * m.unfused;
  state.counters["fused_cpu_us"] = 1e6 * m.fused_cpu;
  state.counters["pairs"] = static_cast<double>(m.pairs);
  return m;
}

}  // namespace lowrank::bench
