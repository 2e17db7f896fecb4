// Times lowrank's CPU GPT-2 training step on any config, the twin of llm.c's timing harness
// (../shared/anchors/llm.c/bench/time_gpt2.c): per step forward + loss, zero_grad, backward,
// AdamW (lr 1e-4, betas 0.9/0.95, eps 1e-8, decay 0.1, as llm.c's main), no dropout, no clipping
// (llm.c does none). bench/llmc_compare.sh runs both alternately.
//
//   gpt2_step L H C CTX B T STEPS THREADS
//
// Prints one line per step and a final JSON line with the median tokens/s over the steps after
// the first (warm-up: allocation, first touch).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/threads.h"
#include "models/gpt2/model.h"
#include "optim/adam.h"

using namespace lowrank;
namespace mg = lowrank::models::gpt2;

namespace {

// Ids from a fixed LCG: speed does not depend on their values.
Tensor ids(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(b * t));
  for (auto& x : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<int64_t>((seed >> 33) % static_cast<uint64_t>(vocab));
  }
  return Tensor::from_vector(v, {b, t});
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: %s L H C CTX B T STEPS THREADS\n", argv[0]);
    return 2;
  }
  long a[8];
  for (int i = 0; i < 8; ++i) a[i] = std::strtol(argv[i + 1], nullptr, 10);
  const long L = a[0], H = a[1], C = a[2], ctx = a[3], B = a[4], T = a[5], steps = a[6], threads = a[7];
  if (L <= 0 || H <= 0 || C <= 0 || C % H != 0 || T <= 0 || T > ctx || B <= 0 || steps < 2 || threads < 0) {
    std::fprintf(stderr, "gpt2_step: need positive L H C B T, C divisible by H, T <= CTX, STEPS >= 2\n");
    return 2;
  }
  try {
    set_num_threads(static_cast<int>(threads));
    mg::Config cfg;
    cfg.n_layer = L, cfg.n_head = H, cfg.n_embd = C, cfg.n_ctx = ctx, cfg.dropout = 0.0;
    nn::Generator gen(0);
    mg::Gpt2 model(cfg, gen);
    optim::AdamW opt(model.named_parameters(), optim::AdamOptions{.lr = 1e-4, .beta2 = 0.95, .weight_decay = 0.1});
    const Tensor x = ids(B, T, cfg.vocab_size, 1), y = ids(B, T, cfg.vocab_size, 2);
    std::printf("B=%ld T=%ld steps=%ld threads=%d\n", B, T, steps, num_threads());
    std::vector<double> step_s;
    for (long s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      Tensor loss = model.loss(x, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      const double l = loss.item();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("step %ld: loss %f, %.1f ms, %.0f tokens/s\n", s, l, 1e3 * dt, static_cast<double>(B * T) / dt);
      std::fflush(stdout);
      if (s > 0) step_s.push_back(dt);
    }
    const double ms = median(step_s);
    std::printf(
        "{\"program\": \"lowrank\", \"B\": %ld, \"T\": %ld, \"L\": %ld, \"NH\": %ld, \"C\": %ld, \"V\": %lld, "
        "\"threads\": %d, \"steps_timed\": %zu, \"median_step_ms\": %.2f, \"median_tokens_per_s\": %.1f}\n",
        B, T, L, H, C, static_cast<long long>(cfg.vocab_size), num_threads(), step_s.size(), 1e3 * ms,
        static_cast<double>(B * T) / ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
