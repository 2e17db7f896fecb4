// GPT-2 training and generation speed: one training step of the small preset on the CPU (batch
// 8 x 256 tokens: forward, loss, backward, clipping, AdamW) with a tokens/s counter, its parts,
// generation with and without the KV cache (tokens/s), and on a GPU the 124M preset's step at batch
// 8 x 1024. Random weights and ids: speed does not depend on their values.
// Compare the step with tests/reference/gpt2_train_reference.py (PyTorch, same configuration),
// run back to back on the same machine; the goal is >= 1.5x PyTorch's tokens/s.
#include <benchmark/benchmark.h>

#include <time.h>

#include <memory>
#include <vector>

#include "bench/gpt2_steps.h"
#include "bench/threads_paired.h"
#include "core/device.h"
#include "core/ops.h"
#include "core/threads.h"
#include "models/gpt2/generate.h"
#include "models/gpt2/model.h"
#include "optim/adam.h"
#include "optim/clip.h"

using namespace lowrank;
namespace mg = lowrank::models::gpt2;

namespace {

constexpr int64_t kBatch = 8;

using bench::random_ids;

struct Trainer {
  mg::Config cfg;
  nn::Generator gen{0};
  mg::Gpt2 model;
  std::unique_ptr<optim::AdamW> opt;
  Tensor x, y;
  // No dropout, as llm.c (the 124M preset has OpenAI's 0.1).
  explicit Trainer(mg::Config c = mg::Config::preset("small"), int64_t batch = kBatch, int64_t seq = 0)
      : cfg([&] {
          c.dropout = 0.0;
          return c;
        }()),
        model(cfg, gen),
        x(random_ids(batch, seq > 0 ? seq : cfg.n_ctx, cfg.vocab_size, 1)),
        y(random_ids(batch, seq > 0 ? seq : cfg.n_ctx, cfg.vocab_size, 2)) {
    opt = std::make_unique<optim::AdamW>(model.named_parameters(),
                                         optim::AdamOptions{.lr = 1e-4, .beta2 = 0.95, .weight_decay = 0.1});
  }
  double step() {
    Tensor loss = model.loss(x, y);
    opt->zero_grad();
    loss.backward();
    optim::clip_grad_norm(opt->parameters(), 1.0);
    opt->step();
    return loss.item();
  }
};

void set_tokens_counter(benchmark::State& state, int64_t tokens) {
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

// ---- training

// The GPU figure: one AdamW step of the 124M preset (dropout 0.1 as OpenAI trained it) at
// batch 8 x range(0) tokens on CUDA device 0; skipped without a GPU. loss.item() synchronises.
void BM_TrainStepCuda(benchmark::State& state) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device (or a build without the CUDA backend)");
    return;
  }
  const int64_t seq = state.range(0);
  const mg::Config cfg = mg::Config::preset("gpt2");
  nn::Generator gen(0);
  mg::Gpt2 model(cfg, gen);
  model.to(Device::cuda(0));
  optim::AdamW opt(model.named_parameters(), {.lr = 1e-4, .beta2 = 0.95, .weight_decay = 0.1});
  const Tensor x = random_ids(kBatch, seq, cfg.vocab_size, 1).to(Device::cuda(0));
  const Tensor y = random_ids(kBatch, seq, cfg.vocab_size, 2).to(Device::cuda(0));
  auto step = [&] {
    Tensor loss = model.loss(x, y);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(opt.parameters(), 1.0);
    opt.step();
    return loss.item();
  };
  step();  // allocator warm-up, cuBLAS load, optimizer buffers
  for (auto _ : state) benchmark::DoNotOptimize(step());
  set_tokens_counter(state, kBatch * seq);
}
BENCHMARK(BM_TrainStepCuda)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// tokens/s over wall time, and tokens per second of process CPU time (all threads): the second
// is the robust figure on a shared machine, where wall time depends on the other processes.
void BM_TrainStep(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  Trainer t;
  t.step();  // first-touch allocations and optimizer buffers
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) benchmark::DoNotOptimize(t.step());
  const double cpu = process_cpu_seconds() - cpu0;
  set_tokens_counter(state, kBatch * t.cfg.n_ctx);
  state.counters["tokens/cpu_s"] = static_cast<double>(state.iterations() * kBatch * t.cfg.n_ctx) / cpu;
  set_num_threads(0);
}
BENCHMARK(BM_TrainStep)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// 2 threads against 1, steps alternating in one process (bench/threads_paired.h): t2/t1 is the
// 2-thread step time over the 1-thread one (the goal: <= 1/1.7 = 0.59). range(0): 0 = the small
// preset at 8 x 256, 1 = GPT-2 124M at 4 x 64 (the llm.c comparison's configs).
void BM_TrainStepThreadsPaired(benchmark::State& state) {
  std::unique_ptr<Trainer> t;
  if (state.range(0) == 0) {
    t = std::make_unique<Trainer>();
  } else {
    t = std::make_unique<Trainer>(mg::Config::preset("gpt2"), 4, 64);
  }
  const bench::PairedMedians m = bench::run_thread_pairs(
      state, [&] { benchmark::DoNotOptimize(t->step()); }, 30.0);
  state.counters["tokens/s_2threads"] = static_cast<double>(t->x.numel()) / m.fused;
  state.counters["tokens/s_1thread"] = static_cast<double>(t->x.numel()) / m.unfused;
  state.SetLabel(state.range(0) == 0 ? "small 8x256" : "gpt2-124M 4x64");
}
BENCHMARK(BM_TrainStepThreadsPaired)->Arg(0)->Arg(1)->Unit(benchmark::kSecond)->UseManualTime()->Iterations(1);

// The step's parts, one thread: forward + loss alone, then with backward (no optimizer).
void BM_TrainForward(benchmark::State& state) {
  set_num_threads(1);
  Trainer t;
  for (auto _ : state) {
    NoGradGuard ng;
    benchmark::DoNotOptimize(t.model.loss(t.x, t.y).item());
  }
  set_tokens_counter(state, kBatch * t.cfg.n_ctx);
  set_num_threads(0);
}
BENCHMARK(BM_TrainForward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TrainForwardBackward(benchmark::State& state) {
  set_num_threads(1);
  Trainer t;
  for (auto _ : state) {
    Tensor loss = t.model.loss(t.x, t.y);
    t.model.zero_grad();
    loss.backward();
    benchmark::DoNotOptimize(loss.item());
  }
  set_tokens_counter(state, kBatch * t.cfg.n_ctx);
  set_num_threads(0);
}
BENCHMARK(BM_TrainForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- generation: range(0) = KV cache on/off, range(1) = new tokens after a one-token prompt
// (greedy), one thread. tokens/s over the whole generation, prefill included.

void BM_Generate(benchmark::State& state) {
  set_num_threads(1);
  const mg::Config cfg = mg::Config::preset("small");
  nn::Generator gen(0);
  mg::Gpt2 model(cfg, gen);
  mg::GenerateOptions o;
  o.max_tokens = state.range(1);
  o.sampling.temperature = 0.0;
  o.kv_cache = state.range(0) != 0;
  for (auto _ : state) benchmark::DoNotOptimize(mg::generate(model, {50256}, o).tokens.size());
  set_tokens_counter(state, o.max_tokens);
  state.SetLabel(o.kv_cache ? "kv-cache" : "no-cache");
  set_num_threads(0);
}
// KV-cache generation of GPT-2 124M (32 tokens after a one-token prompt, greedy) at 2 threads
// against 1 (bench/threads_paired.h): one token at a time, its products are matrix-vector ones.
void BM_GenerateThreadsPaired(benchmark::State& state) {
  nn::Generator gen(0);
  mg::Gpt2 model(mg::Config::preset("gpt2"), gen);
  mg::GenerateOptions o;
  o.max_tokens = 32;
  o.sampling.temperature = 0.0;
  auto run = [&] { benchmark::DoNotOptimize(mg::generate(model, {50256}, o).tokens.size()); };
  const bench::PairedMedians m = bench::run_thread_pairs(state, run, 20.0);
  state.counters["tokens/s_2threads"] = static_cast<double>(o.max_tokens) / m.fused;
  state.counters["tokens/s_1thread"] = static_cast<double>(o.max_tokens) / m.unfused;
  state.SetLabel("gpt2-124M kv-cache");
}
BENCHMARK(BM_GenerateThreadsPaired)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(1);

BENCHMARK(BM_Generate)
    ->Args({1, 64})
    ->Args({0, 64})
    ->Args({1, 255})
    ->Args({0, 255})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
