// The gradient all-reduce of data-parallel training (dist::GradientSync) on real gradient sets:
// the MLP's (118k parameters) and the small GPT-2's (16M), at several bucket sizes: the figures
// that chose dist::kDefaultBucketBytes. Run it over the ranks it is for:
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 build-cpu/bench/dist_bench
//
// Iteration counts are fixed (every rank must call the all-reduce as often); rank 0 reports. In a
// world of one it times the packing alone (GradientSync with `always`, the sum over one rank).
// BM_AdamWStepGpt2Small times the small GPT-2's AdamW update on one thread: the work ZeRO stage 1
// would split over the ranks (against the step time of bench/dist_scaling.sh, it says whether that
// pays). Not --benchmark_enable_random_interleaving: each rank would draw its own order and their
// all-reduces would not match. On a shared machine run it twice and compare the sizes within a run.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "core/ops.h"
#include "core/threads.h"
#include "models/gpt2/model.h"
#include "models/mlp.h"
#include "optim/adam.h"
#include "tools/dist/dist.h"

namespace {
using namespace lowrank;

// A model's parameters with a random gradient each (values don't matter to the transport).
optim::NamedParameters with_gradients(const optim::NamedParameters& params) {
  uint64_t seed = 1;
  for (const auto& [name, p] : params) Tensor(p).set_grad(randn(p.shape(), seed++));
  return params;
}

const optim::NamedParameters& mlp_grads() {
  static models::Mlp model;
  static optim::NamedParameters p = with_gradients(model.named_parameters());
  return p;
}

const optim::NamedParameters& gpt2_grads() {
  static models::gpt2::Gpt2 model(models::gpt2::Config::preset("small"));
  static optim::NamedParameters p = with_gradients(model.named_parameters());
  return p;
}

void all_reduce(benchmark::State& state, const optim::NamedParameters& params) {
  dist::GradientSync sync(state.range(0), /*always=*/true);
  int64_t bytes = 0;
  for (const auto& [name, p] : params) bytes += static_cast<int64_t>(p.nbytes());
  dist::barrier();
  for (auto _ : state) sync.all_reduce(params);
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["MB"] = static_cast<double>(bytes) / 1e6;
  state.counters["calls"] = static_cast<double>(sync.calls()) / static_cast<double>(state.iterations());
  state.counters["ranks"] = dist::size();
}

void BM_AllReduceMlp(benchmark::State& state) {
  all_reduce(state, mlp_grads());
}
void BM_AllReduceGpt2Small(benchmark::State& state) {
  all_reduce(state, gpt2_grads());
}

void BM_AdamWStepGpt2Small(benchmark::State& state) {
  set_num_threads(1);
  optim::AdamW opt(optim::ParamGroups{{"all", gpt2_grads(), std::nullopt, 0.1}}, {.lr = 1e-4});
  for (auto _ : state) opt.step();
  state.counters["parameters"] = 0;
  for (const auto& [name, p] : gpt2_grads()) state.counters["parameters"] += static_cast<double>(p.numel());
}

BENCHMARK(BM_AllReduceMlp)
    ->Arg(16 << 10)
    ->Arg(64 << 10)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->Arg(4 << 20)
    ->Arg(16 << 20)
    ->Iterations(300)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AllReduceGpt2Small)
    ->Arg(256 << 10)
    ->Arg(1 << 20)
    ->Arg(4 << 20)
    ->Arg(16 << 20)
    ->Arg(64 << 20)
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamWStepGpt2Small)->Iterations(10)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  lowrank::dist::World world(&argc, &argv);
  if (!lowrank::dist::is_leader() && !std::freopen("/dev/null", "w", stdout)) return 1;  // rank 0 reports
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
