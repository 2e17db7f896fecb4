// GPT-2 LoRA fine-tuning speed: one training step with LoRA adapters on query + value (r = 8,
// alpha 16, the base frozen) against one full fine-tuning step (every weight, AdamW) on the same
// batch, timed in pairs back to back (bench/paired.h) so both see the same machine load; plus the
// optimizer state each keeps and the process's peak RSS.
//
//   BM_LoraVsFull/<preset>/<batch>/<seq>/<threads>   preset 0: "small" (4 x 256), 1: "gpt2" (124M)
//     lora_tokens/s, full_tokens/s     tokens per second of each step (medians of the pairs)
//     speedup                          full step time / LoRA step time (median of per-pair ratios)
//     lora_optimizer_MiB, full_optimizer_MiB, optimizer_state_ratio   AdamW moments after a step
//   BM_LoraStepThreadsPaired/<preset>/<batch>/<seq>   the LoRA step at 2 threads against 1: t2/t1
//   BM_StepPeakRss/<lora>/<preset>/<batch>/<seq>    one model, one kind of step: peak_rss_MiB is the
//     whole process's, so run each alone (--benchmark_filter='BM_StepPeakRss/1/0/8/256/').
//
// The goal: LoRA >= 1.4x full fine-tuning's tokens/s (the frozen base skips its weight
// gradients, the tied head's gradient and AdamW on ~all weights); optimizer state <= 1%.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include "bench/gpt2_steps.h"
#include "bench/threads_paired.h"
#include "core/threads.h"

using namespace lowrank;
using bench::FineTuneStep;
using bench::random_ids;

namespace {

const char* const kPresets[] = {"small", "gpt2"};

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

void BM_LoraVsFull(benchmark::State& state) {
  const std::string preset = kPresets[state.range(0)];
  const int64_t batch = state.range(1), seq = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  FineTuneStep lora(preset, true), full(preset, false);
  const int64_t vocab = lora.model->config().vocab_size;
  const Tensor x = random_ids(batch, seq, vocab, 1), y = random_ids(batch, seq, vocab, 2);
  auto timed = [&](bool is_lora) {
    return bench::time_once([&] { benchmark::DoNotOptimize((is_lora ? lora : full).step(x, y)); }, [] {});
  };
  const bench::PairedMedians m = bench::run_pairs(state, timed, 20.0);
  const auto tokens = static_cast<double>(batch * seq);
  state.counters["lora_tokens/s"] = tokens / m.fused;
  state.counters["full_tokens/s"] = tokens / m.unfused;
  state.counters["speedup"] = m.ratio > 0 ? 1.0 / m.ratio : 0.0;
  const double lb = static_cast<double>(lora.optimizer_bytes()), fb = static_cast<double>(full.optimizer_bytes());
  state.counters["lora_optimizer_MiB"] = lb / 1048576.0;
  state.counters["full_optimizer_MiB"] = fb / 1048576.0;
  state.counters["optimizer_state_ratio"] = fb > 0 ? lb / fb : 0.0;
  state.counters["lora_trainable"] = static_cast<double>(lora.model->parameter_count().trainable);
  state.counters["full_trainable"] = static_cast<double>(full.model->parameter_count().trainable);
  state.SetLabel(preset);
  set_num_threads(0);
}
// small: gpt2 train's batch (8 x 256); 124M: a batch that fits a CPU's patience (2 x 256).
BENCHMARK(BM_LoraVsFull)
    ->Args({0, 8, 256, 1})
    ->Args({0, 8, 256, 2})
    ->Args({1, 2, 256, 2})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// One LoRA step at 2 threads against 1 (bench/threads_paired.h), on `gpt2 lora`'s default batch
// (8 x 64) of the small preset: range = preset, batch, seq.
void BM_LoraStepThreadsPaired(benchmark::State& state) {
  const std::string preset = kPresets[state.range(0)];
  const int64_t batch = state.range(1), seq = state.range(2);
  FineTuneStep lora(preset, true);
  const int64_t vocab = lora.model->config().vocab_size;
  const Tensor x = random_ids(batch, seq, vocab, 1), y = random_ids(batch, seq, vocab, 2);
  const bench::PairedMedians m = bench::run_thread_pairs(
      state, [&] { benchmark::DoNotOptimize(lora.step(x, y)); }, 20.0);
  state.counters["tokens/s_2threads"] = static_cast<double>(batch * seq) / m.fused;
  state.counters["tokens/s_1thread"] = static_cast<double>(batch * seq) / m.unfused;
  state.SetLabel(preset);
}
BENCHMARK(BM_LoraStepThreadsPaired)->Args({0, 8, 64})->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_StepPeakRss(benchmark::State& state) {
  const bool is_lora = state.range(0) != 0;
  const std::string preset = kPresets[state.range(1)];
  const int64_t batch = state.range(2), seq = state.range(3);
  FineTuneStep r(preset, is_lora);
  const int64_t vocab = r.model->config().vocab_size;
  const Tensor x = random_ids(batch, seq, vocab, 1), y = random_ids(batch, seq, vocab, 2);
  for (auto _ : state) benchmark::DoNotOptimize(r.step(x, y));
  state.counters["peak_rss_MiB"] = peak_rss_mib();
  state.counters["optimizer_MiB"] = static_cast<double>(r.optimizer_bytes()) / 1048576.0;
  state.SetLabel(std::string(is_lora ? "lora " : "full ") + preset);
}
BENCHMARK(BM_StepPeakRss)
    ->Args({1, 0, 8, 256})
    ->Args({0, 0, 8, 256})
    ->Args({1, 1, 2, 256})
    ->Args({0, 1, 2, 256})
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
