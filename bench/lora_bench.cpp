// Fused LoRA matmul vs the unfused sequence a PyTorch user writes vs the merged weight (one GEMM
// with W' = base_scale·W + scale·BA), forward + backward with W frozen, on CPU and (when built
// with CUDA and a GPU answers) on GPU. The figure that matters is the fused/unfused time ratio,
// measured side by side in one run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bench/threads_paired.h"
#include "core/cuda/cuda_api.h"
#include "core/ops.h"

using namespace lowrank;

namespace {

enum class Variant { Fused, Unfused, Merged };

struct Inputs {
  Tensor x, w, b, a, bm;
};

Inputs make_inputs(int64_t m, int64_t in, int64_t out, int64_t r, Device d) {
  Inputs t;
  t.x = randn({m, in}, 1, 0, DType::F32, d).requires_grad_();
  t.w = randn({out, in}, 1, 1 << 24, DType::F32, d);
  t.b = randn({out}, 1, 2 << 24, DType::F32, d);
  t.a = randn({r, in}, 1, 3 << 24, DType::F32, d).requires_grad_();
  t.bm = randn({out, r}, 1, 4 << 24, DType::F32, d).requires_grad_();
  return t;
}

void step(Variant v, Inputs& t, const Tensor& gy, double scale, double base_scale) {
  Tensor y;
  switch (v) {
    case Variant::Fused:
      y = lora_linear(t.x, t.w, t.b, t.a, t.bm, scale, base_scale);
      break;
    case Variant::Unfused:  // F.linear(x, W, b) * s0 + (x @ A.T) @ B.T * s, as eager PyTorch runs it
      y = add(add(mul(matmul(t.x, t.w.mT()), base_scale), t.b), mul(matmul(matmul(t.x, t.a.mT()), t.bm.mT()), scale));
      break;
    case Variant::Merged: {  // W' = s0·W + s·B A, then one GEMM (the merge is part of every step)
      Tensor wm = add(mul(t.w, base_scale), mul(matmul(t.bm, t.a), scale));
      y = add(matmul(t.x, wm.mT()), t.b);
      break;
    }
  }
  y.backward(gy);
  t.x.zero_grad();
  t.a.zero_grad();
  t.bm.zero_grad();
}

void run(benchmark::State& state, Variant v, Device d) {
  const int64_t m = state.range(0), in = state.range(1), out = state.range(2), r = state.range(3);
  Inputs t = make_inputs(m, in, out, r, d);
  Tensor gy = randn({m, out}, 2, 0, DType::F32, d);
  const double scale = 16.0 / static_cast<double>(r), base_scale = 0.9;
  step(v, t, gy, scale, base_scale);  // warm up (allocator, BLAS threads, handles)
  for (auto _ : state) {
    if (d.is_cuda()) {
      cuda_synchronize();
      auto t0 = std::chrono::steady_clock::now();
      step(v, t, gy, scale, base_scale);
      cuda_synchronize();
      state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } else {
      step(v, t, gy, scale, base_scale);
    }
  }
  // FLOPs of the fused algorithm (frozen W): forward 3 GEMMs, backward gy·B, gx (2), gA, gB.
  const double fl =
      2.0 * m * (in * out + in * r + r * out) + 2.0 * m * (out * r + out * in + r * in + r * in + out * r);
  state.counters["FLOP/s"] = benchmark::Counter(fl, benchmark::Counter::kIsIterationInvariantRate);
  // Roofline hint: bytes of the unavoidable traffic (x, W, A, B, gy in; y, gx, gA, gB out), f32.
  const double bytes = 4.0 * (2.0 * m * in + out * in + 2.0 * r * in + 2.0 * out * r + 2.0 * m * out);
  state.counters["bytes"] = bytes;
  state.counters["AI(FLOP/B)"] = fl / bytes;
}

// Fused and unfused back to back inside one iteration, in alternating order, so that both see the
// same machine load: the median of the per-pair time ratios is the figure that survives a shared,
// noisy machine (the separate fused/unfused benchmarks drift apart when the load changes between them).
void run_paired(benchmark::State& state, Device d) {
  const int64_t m = state.range(0), in = state.range(1), out = state.range(2), r = state.range(3);
  Inputs t = make_inputs(m, in, out, r, d);
  Tensor gy = randn({m, out}, 2, 0, DType::F32, d);
  const double scale = 16.0 / static_cast<double>(r), base_scale = 0.9;
  auto timed_pair = [&](bool fused) {
    return bench::time_once([&] { step(fused ? Variant::Fused : Variant::Unfused, t, gy, scale, base_scale); },
                            [&] {
                              if (d.is_cuda()) cuda_synchronize();
                            });
  };
  bench::run_pairs(state, timed_pair, 60.0);
}

// The fused step on the CPU at 2 threads against 1 (bench/threads_paired.h): t2/t1 < 1 when the
// second thread helps (GEMMs split over the pool above a size, kernels/cpu/gemm.cpp).
void run_threads_paired(benchmark::State& state) {
  const int64_t m = state.range(0), in = state.range(1), out = state.range(2), r = state.range(3);
  Inputs t = make_inputs(m, in, out, r, Device::cpu());
  Tensor gy = randn({m, out}, 2);
  const double scale = 16.0 / static_cast<double>(r), base_scale = 0.9;
  bench::run_thread_pairs(
      state, [&] { step(Variant::Fused, t, gy, scale, base_scale); }, 20.0);
}

void register_all(const char* dev_name, Device d) {
  const std::pair<const char*, Variant> variants[] = {
      {"fused", Variant::Fused}, {"unfused", Variant::Unfused}, {"merged", Variant::Merged}};
  const int64_t ms[] = {32, 512, 4096};
  const std::pair<int64_t, int64_t> dims[] = {{128, 128}, {768, 768}, {768, 2304}, {768, 3072}};
  const int64_t ranks[] = {4, 8, 16, 64};
  // Variants of one shape sit next to each other so their ratio is read from adjacent lines.
  for (int64_t m : ms)
    for (auto [in, out] : dims)
      for (int64_t r : ranks)
        for (auto [vname, v] : variants) {
          std::string name = std::string("lora/") + dev_name + "/" + vname;
          auto* b = benchmark::RegisterBenchmark(name.c_str(), [v, d](benchmark::State& s) { run(s, v, d); });
          b->Args({m, in, out, r})->ArgNames({"M", "in", "out", "r"})->Unit(benchmark::kMicrosecond);
          if (d.is_cuda())
            b->UseManualTime();
          else
            b->UseRealTime();  // OpenBLAS threads: CPU time of the main thread would undercount
        }
  for (int64_t m : ms)
    for (auto [in, out] : dims)
      for (int64_t r : ranks) {
        std::string name = std::string("lora/") + dev_name + "/paired";
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [d](benchmark::State& s) { run_paired(s, d); });
        b->Args({m, in, out, r})->ArgNames({"M", "in", "out", "r"})->Unit(benchmark::kMicrosecond);
        b->UseManualTime()->Iterations(1);  // the pairs' wall time; the ratio counter is what to read
      }
}

}  // namespace

int main(int argc, char** argv) {
  register_all("cpu", Device::cpu());
  // A few of the shapes above: an MLP-sized layer, GPT-2's 768-wide projections at few and many
  // rows, and its MLP's 768 -> 3072.
  const std::vector<std::vector<int64_t>> thread_shapes = {
      {32, 128, 128, 8}, {32, 768, 768, 8}, {512, 768, 768, 8}, {512, 768, 3072, 16}, {4096, 768, 768, 16}};
  for (const auto& args : thread_shapes) {
    auto* b = benchmark::RegisterBenchmark("lora/cpu/fused/ThreadsPaired", run_threads_paired);
    b->Args(args)->ArgNames({"M", "in", "out", "r"})->Unit(benchmark::kMicrosecond)->UseManualTime()->Iterations(1);
  }
  if (cuda_runtime_device_count() > 0) register_all("cuda", Device::cuda(0));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
