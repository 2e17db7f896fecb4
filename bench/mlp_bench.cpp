// One training epoch of the Fashion-MNIST MLP on the CPU (60,000 samples, batch 32, Adam, sparse
// cross-entropy), the step broken into its parts, and Dense as one node (nn::linear) against the
// op-by-op composition. Synthetic pixels and labels: speed does not depend on their values.
// Run: bench/mlp_bench --benchmark_filter=... ; the goal is ~1 s per epoch on 2 cores.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <memory>

#include "bench/threads_paired.h"
#include "core/io/dataloader.h"
#include "core/ops.h"
#include "models/mlp.h"
#include "nn/functional.h"
#include "nn/loss.h"
#include "optim/adam.h"

using namespace lowrank;

namespace {

constexpr int64_t kSamples = 60000;
constexpr int64_t kBatch = 32;

struct Data {
  Tensor images, labels;
};

const Data& data() {
  static Data d = [] {
    Data out;
    out.images = rand({kSamples, 784}, 11);
    NoGradGuard ng;
    Tensor l = mul(rand({kSamples}, 12), 10.0);
    std::vector<float> lf = l.to_vector<float>();
    std::vector<int64_t> li(lf.begin(), lf.end());
    out.labels = Tensor::from_vector(li, {kSamples});
    return out;
  }();
  return d;
}

// A fresh model, its Adam and a loader over the synthetic data: one training run's state.
struct Step {
  nn::Generator gen{0};
  models::Mlp model{{}, gen};
  optim::Adam adam{model.named_parameters(), {.lr = 1e-3, .eps = optim::kKerasAdamEps}};
  io::DataLoader loader{{data().images, data().labels}, {.batch_size = kBatch, .seed = 1}};
  nn::CrossEntropyLoss ce;
  io::Batch batch() {
    auto b = loader.next();
    if (!b) b = loader.next();
    return *b;
  }
};

void run_epoch() {
  Step s;
  double last = 0;
  while (auto b = s.loader.next()) {
    Tensor loss = s.ce(s.model((*b)[0]), (*b)[1]);
    s.adam.zero_grad();
    loss.backward();
    s.adam.step();
    last = loss.item();
  }
  benchmark::DoNotOptimize(last);
}

// 2 threads against 1, epochs alternating in one process (bench/threads_paired.h): t2/t1 is the
// 2-thread epoch time over the 1-thread one (the goal: <= 1/1.7 = 0.59).
void BM_EpochThreadsPaired(benchmark::State& state) {
  data();  // loaded before the first timed epoch
  bench::run_thread_pairs(state, run_epoch, 20.0);
}

void BM_Epoch(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  data();  // loaded before the first timed epoch
  for (auto _ : state) run_epoch();
  state.counters["samples/s"] =
      benchmark::Counter(static_cast<double>(kSamples), benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(0);
}

// One epoch timed by phase (loader gather, forward, loss, zero_grad + backward, Adam) at the given
// thread count: the counters are microseconds a step. Which part gains least from a second thread.
void BM_EpochPhases(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  data();  // loaded before the first timed epoch
  using Clock = std::chrono::steady_clock;
  std::array<double, 5> t{};
  int64_t steps = 0;
  for (auto _ : state) {
    Step s;
    auto t0 = Clock::now();
    auto lap = [&](size_t i) {
      const auto now = Clock::now();
      t[i] += std::chrono::duration<double, std::micro>(now - t0).count();
      t0 = now;
    };
    for (;;) {
      t0 = Clock::now();
      auto b = s.loader.next();
      if (!b) break;
      lap(0);
      Tensor logits = s.model((*b)[0]);
      lap(1);
      Tensor loss = s.ce(logits, (*b)[1]);
      lap(2);
      s.adam.zero_grad();
      loss.backward();
      lap(3);
      s.adam.step();
      lap(4);
      ++steps;
    }
  }
  const char* names[] = {"gather_us", "forward_us", "loss_us", "backward_us", "adam_us"};
  for (size_t i = 0; i < t.size(); ++i) state.counters[names[i]] = t[i] / static_cast<double>(steps);
  set_num_threads(0);
}

// ---- one step in parts (batch 32, one thread): where an epoch's time goes

void BM_StepLoaderBatch(benchmark::State& state) {
  set_num_threads(1);
  Step s;
  for (auto _ : state) benchmark::DoNotOptimize(s.batch());
}

void BM_StepForward(benchmark::State& state) {
  set_num_threads(1);
  Step s;
  io::Batch b = s.batch();
  for (auto _ : state) {
    Tensor loss = s.ce(s.model(b[0]), b[1]);
    benchmark::DoNotOptimize(loss.item());
  }
}

void BM_StepForwardBackward(benchmark::State& state) {
  set_num_threads(1);
  Step s;
  io::Batch b = s.batch();
  for (auto _ : state) {
    Tensor loss = s.ce(s.model(b[0]), b[1]);
    s.adam.zero_grad();
    loss.backward();
  }
}

void BM_StepAdam(benchmark::State& state) {
  set_num_threads(1);
  Step s;
  io::Batch b = s.batch();
  s.ce(s.model(b[0]), b[1]).backward();
  for (auto _ : state) s.adam.step();
}

void BM_StepFull(benchmark::State& state) {
  set_num_threads(1);
  Step s;
  for (auto _ : state) {
    io::Batch b = s.batch();
    Tensor logits = s.model(b[0]);
    Tensor loss = s.ce(logits, b[1]);
    s.adam.zero_grad();
    loss.backward();
    s.adam.step();
    benchmark::DoNotOptimize(loss.item());
  }
}

// ---- Dense 784 -> 128 forward + backward: nn::linear (one node) vs matmul(x, W^T) + b

void dense(benchmark::State& state, bool fused) {
  set_num_threads(1);
  Tensor x = rand({kBatch, 784}, 1);
  Tensor w = rand({128, 784}, 2).requires_grad_();
  Tensor b = rand({128}, 3).requires_grad_();
  Tensor g = rand({kBatch, 128}, 4);
  for (auto _ : state) {
    Tensor y = fused ? nn::linear(x, w, b) : add(matmul(x, w.mT()), b);
    y.backward(g);
    w.zero_grad();
    b.zero_grad();
  }
}
void BM_DenseLinearNode(benchmark::State& state) {
  dense(state, true);
}
void BM_DenseComposed(benchmark::State& state) {
  dense(state, false);
}

}  // namespace

BENCHMARK(BM_Epoch)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_EpochPhases)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_EpochThreadsPaired)->Unit(benchmark::kSecond)->UseManualTime()->Iterations(1);
BENCHMARK(BM_StepLoaderBatch)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_StepForward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_StepForwardBackward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_StepAdam)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_StepFull)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseLinearNode)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseComposed)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
