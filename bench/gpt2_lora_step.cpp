// Times lowrank's GPT-2 LoRA fine-tuning step (bench/gpt2_steps.h: query + value, r = 8, alpha
// 16, the base frozen, AdamW on the adapters, clipping at 1.0, no dropout) on one preset, the twin
// of tests/reference/gpt2_lora_train_reference.py (PyTorch 1.13); bench/gpt2_lora_torch_compare.sh
// runs both alternately.
//
//   gpt2_lora_step PRESET B T STEPS THREADS [full]
//
// `full` times the full fine-tuning step instead. Prints one line per step and a final JSON line
// with the median tokens/s over the steps after the first (warm-up: allocation, first touch).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/gpt2_steps.h"
#include "bench/paired.h"
#include "core/threads.h"

using namespace lowrank;

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr, "usage: %s PRESET B T STEPS THREADS [full]\n", argv[0]);
    return 2;
  }
  const std::string preset = argv[1];
  const long B = std::strtol(argv[2], nullptr, 10), T = std::strtol(argv[3], nullptr, 10);
  const long steps = std::strtol(argv[4], nullptr, 10), threads = std::strtol(argv[5], nullptr, 10);
  const bool lora = argc == 6;
  if (argc == 7 && std::string(argv[6]) != "full") {
    std::fprintf(stderr, "gpt2_lora_step: the sixth argument can only be 'full', got '%s'\n", argv[6]);
    return 2;
  }
  if (B <= 0 || T <= 0 || steps < 2 || threads < 0) {
    std::fprintf(stderr, "gpt2_lora_step: need positive B and T, STEPS >= 2, THREADS >= 0\n");
    return 2;
  }
  try {
    set_num_threads(static_cast<int>(threads));
    bench::FineTuneStep s(preset, lora);
    const models::gpt2::Config& cfg = s.model->config();
    if (T > cfg.n_ctx) {
      std::fprintf(stderr, "gpt2_lora_step: T %ld is longer than the %s context (%lld)\n", T, preset.c_str(),
                   static_cast<long long>(cfg.n_ctx));
      return 2;
    }
    const Tensor x = bench::random_ids(B, T, cfg.vocab_size, 1), y = bench::random_ids(B, T, cfg.vocab_size, 2);
    std::printf("%s %s: B=%ld T=%ld steps=%ld threads=%d trainable=%lld\n", lora ? "lora" : "full", preset.c_str(), B,
                T, steps, num_threads(), static_cast<long long>(s.model->parameter_count().trainable));
    std::vector<double> step_s;
    for (long k = 0; k < steps; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      const double loss = s.step(x, y);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("step %ld: loss %f, %.1f ms, %.0f tokens/s\n", k, loss, 1e3 * dt, static_cast<double>(B * T) / dt);
      std::fflush(stdout);
      if (k > 0) step_s.push_back(dt);
    }
    const double sec = bench::median(step_s);
    std::printf(
        "{\"program\": \"lowrank\", \"step\": \"%s\", \"preset\": \"%s\", \"batch\": %ld, \"seq_len\": %ld, "
        "\"threads\": %d, \"timed_steps\": %zu, \"median_step_ms\": %.2f, \"median_tokens_per_s\": %.1f}\n",
        lora ? "lora" : "full", preset.c_str(), B, T, num_threads(), step_s.size(), 1e3 * sec,
        static_cast<double>(B * T) / sec);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2_lora_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
