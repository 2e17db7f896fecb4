// Fused attention vs the unfused composition a PyTorch user writes (transpose, q·kᵀ·scale,
// masked_fill, softmax, dropout, ·v, transpose back), forward + backward, and the KV-cache decode
// step (one query over Tk cached keys, forward only), on CPU and (built with CUDA, a GPU answering)
// on GPU. The figure that matters is the fused/unfused time ratio of the paired runs.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <string>
#include <vector>

#include "bench/threads_paired.h"
#include "core/cuda/cuda_api.h"
#include "core/ops.h"

using namespace lowrank;

namespace {

enum class Variant { Fused, Unfused };

struct Inputs {
  Tensor q, k, v, gy, mask;  // mask [Tq, Tk]: 1 above the causal diagonal (the unfused path's buffer)
  double p = 0.0;
  bool train = true;
};

Inputs make_inputs(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t D, double p, bool train, Device d) {
  Inputs t;
  t.q = randn({B, Tq, H, D}, 1, 0, DType::F32, d).requires_grad_(train);
  t.k = randn({B, Tk, H, D}, 1, 1 << 26, DType::F32, d).requires_grad_(train);
  t.v = randn({B, Tk, H, D}, 1, 2 << 26, DType::F32, d).requires_grad_(train);
  t.gy = randn({B, Tq, H, D}, 2, 0, DType::F32, d);
  std::vector<float> m(static_cast<size_t>(Tq * Tk));
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = 0; j < Tk; ++j) m[static_cast<size_t>(i * Tk + j)] = j > i + (Tk - Tq) ? 1.f : 0.f;
  t.mask = Tensor::from_vector(m, {Tq, Tk}, d);
  t.p = p;
  t.train = train;
  return t;
}

Tensor unfused(const Inputs& t) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(t.q.size(3)));
  Tensor q = t.q.transpose(1, 2), k = t.k.transpose(1, 2), v = t.v.transpose(1, 2);
  Tensor s = mul(matmul(q, k.mT()), scale);
  s = masked_fill(s, t.mask, -std::numeric_limits<double>::infinity());
  Tensor pr = softmax(s, -1);
  if (t.p > 0) pr = dropout(pr, t.p, true, 3, 0);
  return matmul(pr, v).transpose(1, 2).contiguous();
}

void step(Variant var, Inputs& t) {
  if (!t.train) {
    NoGradGuard ng;
    Tensor y = var == Variant::Fused ? attention(t.q, t.k, t.v, true) : unfused(t);
    benchmark::DoNotOptimize(y.raw_data());
    return;
  }
  Tensor y = var == Variant::Fused ? attention(t.q, t.k, t.v, true, 0.0, t.p, 3, 0) : unfused(t);
  y.backward(t.gy);
  t.q.zero_grad();
  t.k.zero_grad();
  t.v.zero_grad();
}

// Wall seconds of one step.
double timed(Variant var, Inputs& t, Device d) {
  return bench::time_once([&] { step(var, t); },
                          [&] {
                            if (d.is_cuda()) cuda_synchronize();
                          })
      .wall;
}

// Args: B, Tq, Tk, H, D, dropout in percent, train (1: forward + backward, 0: forward only).
Inputs inputs_of(const benchmark::State& s, Device d) {
  return make_inputs(s.range(0), s.range(1), s.range(2), s.range(3), s.range(4), static_cast<double>(s.range(5)) / 100,
                     s.range(6) != 0, d);
}

// Multiply-adds of the causal fused algorithm (2 GEMMs forward, 4 more backward), over the visible
// half of the score matrix.
double flops_of(const benchmark::State& s) {
  const double B = static_cast<double>(s.range(0)), Tq = static_cast<double>(s.range(1)),
               Tk = static_cast<double>(s.range(2)), H = static_cast<double>(s.range(3)),
               D = static_cast<double>(s.range(4));
  const double visible = Tq * (Tk - Tq) + Tq * (Tq + 1) / 2;
  return 2.0 * B * H * visible * D * (s.range(6) ? 6.0 : 2.0);
}

void run(benchmark::State& state, Variant var, Device d) {
  Inputs t = inputs_of(state, d);
  step(var, t);  // warm up (allocator, BLAS threads)
  for (auto _ : state) state.SetIterationTime(timed(var, t, d));
  state.counters["FLOP/s"] = benchmark::Counter(flops_of(state), benchmark::Counter::kIsIterationInvariantRate);
}

// Fused and unfused back to back in alternating order, so that both see the same machine load; the
// median of the per-pair ratios survives a shared, noisy machine.
void run_paired(benchmark::State& state, Device d) {
  Inputs t = inputs_of(state, d);
  auto timed_pair = [&](bool fused) {
    return bench::time_once([&] { step(fused ? Variant::Fused : Variant::Unfused, t); },
                            [&] {
                              if (d.is_cuda()) cuda_synchronize();
                            });
  };
  const bench::PairedMedians m = bench::run_pairs(state, timed_pair, 30.0);
  state.counters["fused_GFLOP/s"] = flops_of(state) / m.fused / 1e9;
}

// The fused step on the CPU at 2 threads against 1 (bench/threads_paired.h): t2/t1 < 1 when the
// second thread helps ((batch, head) pairs split over the pool above a size, kernels/cpu/attention.cpp).
void run_threads_paired(benchmark::State& state) {
  Inputs t = inputs_of(state, Device::cpu());
  bench::run_thread_pairs(
      state, [&] { step(Variant::Fused, t); }, 20.0);
}

void register_all(const char* dev_name, Device d) {
  // {B, Tq, Tk, H, D, dropout %, train}: the small GPT-2 preset, with and without dropout; GPT-2
  // 124M's heads at context 1024; a mid shape; and the KV-cache decode step over 256 and 1024 keys.
  const std::vector<std::vector<int64_t>> shapes = {{8, 256, 256, 4, 64, 0, 1},  {8, 256, 256, 4, 64, 0, 0},
                                                    {8, 256, 256, 4, 64, 10, 1}, {1, 1024, 1024, 12, 64, 0, 1},
                                                    {4, 128, 128, 12, 64, 0, 1}, {8, 1, 256, 4, 64, 0, 0},
                                                    {1, 1, 1024, 12, 64, 0, 0}};
  for (const auto& args : shapes) {
    for (auto [vname, var] : {std::pair{"fused", Variant::Fused}, std::pair{"unfused", Variant::Unfused}}) {
      std::string name = std::string("attention/") + dev_name + "/" + vname;
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [var, d](benchmark::State& s) { run(s, var, d); });
      b->Args(args)->ArgNames({"B", "Tq", "Tk", "H", "D", "drop%", "train"})->Unit(benchmark::kMicrosecond);
      b->UseManualTime();
    }
    std::string name = std::string("attention/") + dev_name + "/paired";
    auto* b = benchmark::RegisterBenchmark(name.c_str(), [d](benchmark::State& s) { run_paired(s, d); });
    b->Args(args)->ArgNames({"B", "Tq", "Tk", "H", "D", "drop%", "train"})->Unit(benchmark::kMicrosecond);
    b->UseManualTime()->Iterations(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all("cpu", Device::cpu());
  // The shapes above, and few heads of short rows (just over the pool's threshold).
  const std::vector<std::vector<int64_t>> thread_shapes = {{8, 256, 256, 4, 64, 0, 1},    {4, 128, 128, 12, 64, 0, 1},
                                                           {1, 1024, 1024, 12, 64, 0, 1}, {1, 64, 64, 4, 64, 0, 1},
                                                           {8, 1, 256, 4, 64, 0, 0},      {1, 1, 1024, 12, 64, 0, 0}};
  for (const auto& args : thread_shapes) {
    auto* b = benchmark::RegisterBenchmark("attention/cpu/fused/ThreadsPaired", run_threads_paired);
    b->Args(args)->ArgNames({"B", "Tq", "Tk", "H", "D", "drop%", "train"})->Unit(benchmark::kMicrosecond);
    b->UseManualTime()->Iterations(1);
  }
  if (cuda_runtime_device_count() > 0) register_all("cuda", Device::cuda(0));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
