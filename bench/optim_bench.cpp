// Optimizer and data-loading costs of one Fashion-MNIST MLP training epoch on the CPU, measured
// side by side in one run:
//  * one Adam step over the MLP's parameters (784x128, 128, 128x128, 128, 128x10, 10 = 118,282
//    floats) through the fused kernel vs the same update composed from framework ops, the
//    unfused sequence a PyTorch user's per-tensor loop runs (ratio fused / unfused; counters give
//    both and the per-epoch cost at 1875 steps);
//  * one epoch of DataLoader batches (60,000 x 784 f32, batch 32, shuffled) gathered;
//  * one AdamW step over GPT-2's parameters at 2 threads against 1.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <ctime>

#include "bench/threads_paired.h"
#include "core/dispatch.h"
#include "core/io/dataloader.h"
#include "core/ops.h"
#include "core/threads.h"
#include "models/gpt2/model.h"
#include "optim/adam.h"
#include "optim/finite.h"

using namespace lowrank;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kStepsPerEpoch = 1875;  // 60,000 / 32

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// CPU time of this thread: on a machine shared with builds, wall time mostly measures the others.
// (BM_AdamStepMlp runs one thread, so both Adam paths run on the calling thread.)
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

optim::NamedParameters mlp_parameters() {
  return {{"l0.kernel", randn({128, 784}, 1)}, {"l0.bias", randn({128}, 2)},       {"l1.kernel", randn({128, 128}, 3)},
          {"l1.bias", randn({128}, 4)},        {"l2.kernel", randn({10, 128}, 5)}, {"l2.bias", randn({10}, 6)}};
}

// Adam with framework ops, one parameter at a time (torch.optim.Adam's foreach=False path).
struct UnfusedAdam {
  optim::NamedParameters params;
  std::vector<Tensor> m, v;
  int64_t step = 0;
  double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  explicit UnfusedAdam(optim::NamedParameters ps) : params(std::move(ps)) {
    for (auto& [n, p] : params) {
      m.push_back(Tensor::zeros(p.shape()));
      v.push_back(Tensor::zeros(p.shape()));
    }
  }
  void update() {
    NoGradGuard ng;
    ++step;
    const double bc1 = 1 - std::pow(b1, static_cast<double>(step)), bc2 = 1 - std::pow(b2, static_cast<double>(step));
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor& p = params[i].second;
      Tensor g = p.grad();
      m[i].copy_(add(mul(m[i], b1), mul(g, 1 - b1)));
      v[i].copy_(add(mul(v[i], b2), mul(mul(g, g), 1 - b2)));
      Tensor denom = add(div(sqrt(v[i]), std::sqrt(bc2)), eps);
      p.copy_(add(p, div(mul(m[i], -lr / bc1), denom)));
    }
  }
};

void BM_AdamStepMlp(benchmark::State& state) {
  set_num_threads(1);  // the fused kernel splits tensors from 2^14 elements over the pool
  optim::NamedParameters fused_ps = mlp_parameters(), unfused_ps = mlp_parameters();
  int64_t n = 0;
  for (auto* ps : {&fused_ps, &unfused_ps})
    for (auto& [name, p] : *ps) p.set_grad(mul(randn(p.shape(), 7), 1e-2));
  for (auto& [name, p] : fused_ps) n += p.numel();
  optim::Adam fused(fused_ps, {.lr = 1e-3, .eps = optim::kKerasAdamEps});
  UnfusedAdam unfused(unfused_ps);
  fused.step();
  unfused.update();
  double t_fused = 0, t_unfused = 0, c_fused = 0, c_unfused = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    double c0 = thread_cpu_seconds();
    fused.step();
    t_fused += seconds_since(t0);
    c_fused += thread_cpu_seconds() - c0;
    t0 = Clock::now();
    c0 = thread_cpu_seconds();
    unfused.update();
    t_unfused += seconds_since(t0);
    c_unfused += thread_cpu_seconds() - c0;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["fused_us"] = 1e6 * t_fused / iters;
  state.counters["unfused_us"] = 1e6 * t_unfused / iters;
  state.counters["fused_cpu_us"] = 1e6 * c_fused / iters;
  state.counters["unfused_cpu_us"] = 1e6 * c_unfused / iters;
  state.counters["fused_over_unfused"] = t_fused / t_unfused;
  state.counters["fused_over_unfused_cpu"] = c_fused / c_unfused;
  state.counters["fused_cpu_ms_per_epoch"] = 1e3 * c_fused / iters * kStepsPerEpoch;
  // p, g, m, v read and p, m, v written: 7 floats per parameter.
  state.counters["fused_cpu_GBps"] = 7.0 * 4.0 * static_cast<double>(n) / (c_fused / iters) / 1e9;
  state.counters["params"] = static_cast<double>(n);
  set_num_threads(0);
}
BENCHMARK(BM_AdamStepMlp)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The training guard's look at the parameters for NaN or infinity after each step
// (tools/train/trainer.cpp, check_every = 1), right after the Adam step that wrote them, as in
// training: optim::first_non_finite over the set (large tensors split over the pool, each thread
// scanning the part it updated) against one thread scanning every tensor (the single-tensor scan,
// as the guard did before). Alternating steps; counters in us a step.
void BM_GuardScanMlp(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  optim::NamedParameters ps = mlp_parameters();
  for (auto& [name, p] : ps) p.set_grad(mul(randn(p.shape(), 7), 1e-2));
  optim::Adam adam(ps, {.lr = 1e-3, .eps = optim::kKerasAdamEps});
  double t_set = 0, t_one = 0;
  int64_t found = 0;
  for (auto _ : state) {
    adam.step();
    auto t0 = Clock::now();
    found += optim::first_non_finite(ps).has_value();
    t_set += seconds_since(t0);
    adam.step();
    t0 = Clock::now();
    for (const auto& [name, p] : ps) found += optim::first_non_finite(p).has_value();
    t_one += seconds_since(t0);
  }
  if (found != 0) state.SkipWithError("a parameter went non-finite");
  const double iters = static_cast<double>(state.iterations());
  state.counters["set_scan_us"] = 1e6 * t_set / iters;
  state.counters["one_thread_scan_us"] = 1e6 * t_one / iters;
  state.counters["set/one_thread"] = t_set / t_one;
  set_num_threads(0);
}
BENCHMARK(BM_GuardScanMlp)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One AdamW step (decay 0.1, as GPT-2 training) over a GPT-2 model's parameter set at 2 threads
// against 1 (bench/threads_paired.h): range(0) = 0 the small preset (~16M floats), 1 GPT-2 124M.
// The kernel splits a tensor over the pool only above a size (kernels/cpu/adam.cpp).
void BM_AdamWGpt2ThreadsPaired(benchmark::State& state) {
  nn::Generator gen(0);
  models::gpt2::Gpt2 model(models::gpt2::Config::preset(state.range(0) == 0 ? "small" : "gpt2"), gen);
  optim::NamedParameters params = model.named_parameters();
  int64_t n = 0;
  for (auto& [name, p] : params) {
    p.set_grad(mul(randn(p.shape(), 7), 1e-2));
    n += p.numel();
  }
  optim::AdamW opt(params, {.lr = 1e-4, .beta2 = 0.95, .weight_decay = 0.1});
  bench::run_thread_pairs(
      state, [&] { opt.step(); }, 20.0);
  state.counters["params"] = static_cast<double>(n);
  state.SetLabel(state.range(0) == 0 ? "small" : "gpt2-124M");
}
BENCHMARK(BM_AdamWGpt2ThreadsPaired)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(1);

void BM_DataLoaderEpoch(benchmark::State& state) {
  const int64_t n = 60000;
  Tensor x = rand({n, 784}, 1), y = Tensor::zeros({n}, DType::I64);
  io::DataLoader loader({x, y}, {.batch_size = state.range(0), .shuffle = true, .seed = 3});
  double t = 0;
  for (auto _ : state) {
    auto t0 = Clock::now();
    int64_t rows = 0;
    while (auto b = loader.next()) rows += b->size();
    benchmark::DoNotOptimize(rows);
    t += seconds_since(t0);
  }
  state.counters["us_per_batch"] = 1e6 * t / static_cast<double>(state.iterations() * loader.num_batches());
  state.counters["ms_per_epoch"] = 1e3 * t / static_cast<double>(state.iterations());
}
BENCHMARK(BM_DataLoaderEpoch)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
