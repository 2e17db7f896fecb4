// Paired timing of two variants (fused vs unfused; 2 threads vs 1 in bench/threads_paired.h): both
// back to back inside one benchmark iteration, in alternating order, so both see the same machine
// load. The medians of the per-pair ratios are the figures that survive a shared, noisy machine,
// where separately timed benchmarks drift apart.
#pragma once
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
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
  double ratio = 0.0, cpu_ratio = 0.0;    // fused / unfused, wall and CPU
  double ratio_q1 = 0.0, ratio_q3 = 0.0;  // quartiles of the wall ratios: the spread of the pairs
  double fused = 0.0, unfused = 0.0, fused_cpu = 0.0, unfused_cpu = 0.0;
  size_t pairs = 0;
};

// The q-quantile (0..1) of v, the nearest rank.
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  const auto k = static_cast<std::ptrdiff_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[static_cast<size_t>(k)];
}

// Runs pairs (timed(true) is the fused variant) until there are enough for a median: at least 9
// and 1 s, or at least 3 once `max_total_s` has passed (large shapes); sets the iteration time.
// `warm_up`: one untimed call of each variant first.
template <class Timed>
PairedMedians collect_pairs(benchmark::State& state, Timed&& timed, double max_total_s, bool warm_up = true) {
  if (warm_up) {
    timed(true);
    timed(false);
  }
  std::vector<double> ratios, cpu_ratios, fused, unfused, fused_cpu, unfused_cpu;
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
      unfused_cpu.push_back(u.cpu);
    }
    state.SetIterationTime(total);
  }
  return {median(ratios),  median(cpu_ratios), quantile(ratios, 0.25), quantile(ratios, 0.75), median(fused),
          median(unfused), median(fused_cpu),  median(unfused_cpu),    ratios.size()};
}

// The names of the two variants in the counters: timed(true)'s and timed(false)'s.
struct PairNames {
  const char* a = "fused";
  const char* b = "unfused";
};

// Counters <a>/<b> (the median wall ratio), cpu_time_ratio, <a>_us, <b>_us, <a>_cpu_us, <b>_cpu_us
// (the medians), pairs.
inline void set_pair_counters(benchmark::State& state, const PairedMedians& m, PairNames names = {}) {
  const std::string a = names.a, b = names.b;
  state.counters[a + "/" + b] = m.ratio;
  state.counters["cpu_time_ratio"] = m.cpu_ratio;
  state.counters[a + "_us"] = 1e6 * m.fused;
  state.counters[b + "_us"] = 1e6 * m.unfused;
  state.counters[a + "_cpu_us"] = 1e6 * m.fused_cpu;
  state.counters[b + "_cpu_us"] = 1e6 * m.unfused_cpu;
  state.counters["pairs"] = static_cast<double>(m.pairs);
}

// collect_pairs with the counters fused/unfused, cpu_time_ratio, fused_us, unfused_us,
// fused_cpu_us, unfused_cpu_us, pairs. Register the benchmark with UseManualTime()->Iterations(1).
template <class Timed>
PairedMedians run_pairs(benchmark::State& state, Timed&& timed, double max_total_s) {
  const PairedMedians m = collect_pairs(state, timed, max_total_s);
  set_pair_counters(state, m);
  return m;
}

}  // namespace lowrank::bench
