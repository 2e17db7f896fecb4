// Core overheads on the CPU, measured side by side in one run:
//  * matmul through lowrank vs a direct cblas_sgemm into a preallocated C (ratio; goal <= 1.05),
//  * per-op cost of forward + backward of a small elementwise chain on 32x128 tensors (goal
//    <= 2 us per op), next to the same math as plain loops (the compute floor) and on 1x1
//    tensors (pure framework overhead),
//  * 2 threads against 1 on that chain and on GPT-2's layer_norm and gelu, small to large.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <vector>

#include "bench/threads_paired.h"
#include "core/ops.h"
#include "kernels/cpu/small_gemm.h"

using namespace lowrank;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of this thread: on a machine shared with builds, wall time mostly measures the others.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// us per op, from wall and thread CPU time over the whole loop.
void set_per_op_counters(benchmark::State& state, Clock::time_point t0, double cpu0, int ops) {
  const double per = 1e6 / (static_cast<double>(state.iterations()) * ops);
  state.counters["us_per_op"] = per * seconds_since(t0);
  state.counters["us_per_op_cpu"] = per * (thread_cpu_seconds() - cpu0);
}

void sgemm_direct(const Tensor& a, const Tensor& b, const Tensor& c, int64_t m, int64_t k, int64_t n) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0f, a.data<float>(), static_cast<blasint>(k), b.data<float>(),
              static_cast<blasint>(n), 0.0f, c.data<float>(), static_cast<blasint>(n));
}

// Both paths alternate inside one iteration so that load from other processes hits both alike;
// the reported time is lowrank's, the counters carry both and their ratio. With threads = 1 the
// ratio is also taken from this thread's CPU time (ratio_cpu), which other processes on a shared
// machine barely disturb; threads = 0 uses every core (OpenBLAS's default).
void BM_MatmulVsSgemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  set_num_threads(threads);
  Tensor a = randn({m, k}, 1), b = randn({k, n}, 2), c = Tensor::empty({m, n});
  sgemm_direct(a, b, c, m, k, n);  // warm up BLAS threads and pages
  benchmark::DoNotOptimize(matmul(a, b));
  double t_lr = 0, t_blas = 0, c_lr = 0, c_blas = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    double c0 = thread_cpu_seconds();
    sgemm_direct(a, b, c, m, k, n);
    t_blas += seconds_since(t0);
    c_blas += thread_cpu_seconds() - c0;
    t0 = Clock::now();
    c0 = thread_cpu_seconds();
    Tensor y = matmul(a, b);
    benchmark::DoNotOptimize(y.raw_data());
    const double dt = seconds_since(t0);
    c_lr += thread_cpu_seconds() - c0;
    t_lr += dt;
    state.SetIterationTime(dt);
  }
  set_num_threads(0);
  const double iters = static_cast<double>(state.iterations()), flop = 2.0 * m * k * n;
  state.counters["lowrank_ms"] = 1e3 * t_lr / iters;
  state.counters["sgemm_ms"] = 1e3 * t_blas / iters;
  state.counters["ratio"] = t_lr / t_blas;
  if (threads == 1) state.counters["ratio_cpu"] = c_lr / c_blas;
  state.counters["lowrank_GFLOPs"] = flop * iters / t_lr * 1e-9;
  state.counters["sgemm_GFLOPs"] = flop * iters / t_blas * 1e-9;
}
BENCHMARK(BM_MatmulVsSgemm)
    ->Args({512, 512, 512, 0})
    ->Args({1024, 768, 768, 0})
    ->Args({512, 512, 512, 1})
    ->Args({1024, 768, 768, 1})
    ->ArgNames({"m", "k", "n", "threads"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// The chain: 7 cheap forward ops (memory-bound, like most of a model's non-GEMM ops), each with
// a backward step; w needs grad like a weight.
constexpr int kChainOps = 7;
Tensor chain(const Tensor& x, const Tensor& w) {
  Tensor h = add(x, w);  // 1
  h = mul(h, w);         // 2
  h = relu(h);           // 3
  h = sub(h, x);         // 4
  h = mul(h, 0.5);       // 5
  h = mul(h, h);         // 6
  return sum(h);         // 7
}

// Same chain as plain loops over preallocated buffers: the compute no framework can avoid.
void BM_PerOpPlainLoops(benchmark::State& state) {
  const int64_t n = state.range(0) * state.range(1);
  std::vector<float> x(n), w(n), h1(n), h2(n), h3(n), h4(n), h5(n), h6(n), g(n), gw(n);
  Tensor xr = randn({n}, 3), wr = randn({n}, 4);
  std::copy_n(xr.data<float>(), n, x.data());
  std::copy_n(wr.data<float>(), n, w.data());
  const auto t0 = Clock::now();
  const double cpu0 = thread_cpu_seconds();
  for (auto _ : state) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) h1[i] = x[i] + w[i];
    for (int64_t i = 0; i < n; ++i) h2[i] = h1[i] * w[i];
    for (int64_t i = 0; i < n; ++i) h3[i] = h2[i] > 0 ? h2[i] : 0.0f;
    for (int64_t i = 0; i < n; ++i) h4[i] = h3[i] - x[i];
    for (int64_t i = 0; i < n; ++i) h5[i] = h4[i] * 0.5f;
    for (int64_t i = 0; i < n; ++i) h6[i] = h5[i] * h5[i];
    for (int64_t i = 0; i < n; ++i) s += h6[i];
    benchmark::DoNotOptimize(s);
    for (int64_t i = 0; i < n; ++i) g[i] = 2.0f * h5[i];
    for (int64_t i = 0; i < n; ++i) g[i] *= 0.5f;
    for (int64_t i = 0; i < n; ++i) g[i] = h2[i] > 0 ? g[i] : 0.0f;
    for (int64_t i = 0; i < n; ++i) gw[i] = g[i] * h1[i] + g[i] * w[i];
    benchmark::DoNotOptimize(gw.data());
    benchmark::ClobberMemory();
  }
  set_per_op_counters(state, t0, cpu0, kChainOps);
}
BENCHMARK(BM_PerOpPlainLoops)->Args({32, 128})->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);

// Forward + backward of the chain through lowrank; us_per_op = time per chain / ops in it.
void BM_PerOp(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  Tensor x = randn({rows, cols}, 3), w = randn({rows, cols}, 4).requires_grad_();
  chain(x, w).backward();
  const auto t0 = Clock::now();
  const double cpu0 = thread_cpu_seconds();
  for (auto _ : state) {
    w.zero_grad();
    chain(x, w).backward();
    benchmark::DoNotOptimize(w.grad().raw_data());
  }
  set_per_op_counters(state, t0, cpu0, kChainOps);
}
BENCHMARK(BM_PerOp)->Args({32, 128})->Args({1, 1})->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);

// ---- 2 threads against 1 (bench/threads_paired.h): t2/t1 < 1 when the second thread helps. Each
// kernel family splits its work over the pool only above a size (kernels/cpu/), so small tensors
// must come out even (t2/t1 ~ 1) and large ones faster.

// The per-op chain above, forward + backward, from the small per-op shape to 1M elements.
void BM_ChainThreadsPaired(benchmark::State& state) {
  Tensor x = randn({state.range(0), state.range(1)}, 3),
         w = randn({state.range(0), state.range(1)}, 4).requires_grad_();
  auto step = [&] {
    w.zero_grad();
    chain(x, w).backward();
  };
  bench::run_thread_pairs(state, step, 10.0);
}

// Square [n, n] shapes from 2^16 to 2^20 elements, around the pool's elementwise threshold.
void square_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {256, 512, 1024}) b->Args({n, n});
  b->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond)->UseManualTime()->Iterations(1);
}
BENCHMARK(BM_ChainThreadsPaired)->Args({32, 128})->Apply(square_shapes);

// An elementwise op over rows with a broadcast operand (a bias add, [rows, cols] + [cols]), forward
// only: the strided path of kernels/cpu/strided.h, which splits rows rather than one long row.
void BM_BroadcastAddThreadsPaired(benchmark::State& state) {
  const Tensor x = randn({state.range(0), state.range(1)}, 9), b = randn({state.range(1)}, 10);
  auto step = [&] { benchmark::DoNotOptimize(add(x, b).raw_data()); };
  bench::run_thread_pairs(state, step, 10.0);
}
BENCHMARK(BM_BroadcastAddThreadsPaired)->Apply(square_shapes);

// A row op and a compute-bound elementwise op of GPT-2, forward + backward: layer_norm over
// [rows, cols] (range(2) = 0) and gelu (range(2) = 1).
void BM_RowOpThreadsPaired(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const bool is_gelu = state.range(2) != 0;
  Tensor x = randn({rows, cols}, 5).requires_grad_(), gy = randn({rows, cols}, 6);
  Tensor w = randn({cols}, 7).requires_grad_(), b = randn({cols}, 8).requires_grad_();
  auto step = [&] {
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    (is_gelu ? gelu(x) : layer_norm(x, w, b)).backward(gy);
  };
  bench::run_thread_pairs(state, step, 10.0);
  state.SetLabel(is_gelu ? "gelu" : "layer_norm");
}
BENCHMARK(BM_RowOpThreadsPaired)
    ->Args({16, 768, 0})
    ->Args({64, 768, 0})
    ->Args({256, 768, 0})
    ->Args({2048, 768, 0})
    ->Args({64, 768, 1})
    ->Args({256, 3072, 1})
    ->ArgNames({"rows", "cols", "gelu"})
    ->Unit(benchmark::kMicrosecond)
    ->UseManualTime()
    ->Iterations(1);

// kernels/cpu/small_gemm against single-threaded OpenBLAS on one product, paired (bench/paired.h):
// small/blas < 1 where ours is faster. Args: ta, tb, m, n, k. The rows are the MLP's products at a
// batch of 32 and the halves a 2-thread split gives each thread; small_gemm_takes names the ones
// the GEMM kernel gives it (counter `takes`).
void BM_SmallGemmVsBlas(benchmark::State& state) {
  if (!cpu::small_gemm_available()) {
    state.SkipWithError("this CPU has no AVX-512F");
    return;
  }
  const bool ta = state.range(0) != 0, tb = state.range(1) != 0;
  const int64_t m = state.range(2), n = state.range(3), k = state.range(4);
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const std::vector<float> a = rand({m * k}, 1).to_vector<float>(), b = rand({k * n}, 2).to_vector<float>();
  std::vector<float> c(static_cast<size_t>(m * n));
  openblas_set_num_threads(1);
  const int64_t calls = std::max<int64_t>(1, (int64_t{1} << 24) / (m * n * k));  // ~2-5 ms a sample
  auto timed = [&](bool small) {
    return bench::time_once(
        [&] {
          for (int64_t i = 0; i < calls; ++i) {
            if (small)
              cpu::small_gemm(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
            else
              cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                          static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a.data(),
                          static_cast<blasint>(lda), b.data(), static_cast<blasint>(ldb), 0.0f, c.data(),
                          static_cast<blasint>(n));
          }
          benchmark::DoNotOptimize(c.data());
        },
        [] {});
  };
  bench::PairedMedians med = bench::collect_pairs(state, timed, 10.0);
  med.fused /= static_cast<double>(calls), med.unfused /= static_cast<double>(calls);
  med.fused_cpu /= static_cast<double>(calls), med.unfused_cpu /= static_cast<double>(calls);
  bench::set_pair_counters(state, med, {"small", "blas"});
  state.counters["GFLOP/s_small"] = 2e-9 * static_cast<double>(m * n * k) / med.fused;
  state.counters["GFLOP/s_blas"] = 2e-9 * static_cast<double>(m * n * k) / med.unfused;
  state.counters["takes"] = cpu::small_gemm_takes(ta, tb, m, n, k) ? 1 : 0;
}
BENCHMARK(BM_SmallGemmVsBlas)
    ->ArgNames({"ta", "tb", "m", "n", "k"})
    ->Args({0, 1, 32, 128, 784})  // forward x·Wᵀ, 784 -> 128
    ->Args({1, 0, 128, 784, 32})  // its kernel's gradient dYᵀ·x
    ->Args({0, 1, 32, 64, 784})   // their halves on 2 threads
    ->Args({1, 0, 64, 784, 32})
    ->Args({0, 1, 16, 128, 784})  // a batch of 16
    ->Args({1, 0, 128, 784, 16})
    ->Args({0, 1, 32, 128, 128})  // the 128 -> 128 layer: forward, input gradient, kernel gradient
    ->Args({0, 0, 32, 128, 128})
    ->Args({1, 0, 128, 128, 32})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
