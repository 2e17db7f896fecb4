// Choosing the next token from a row of logits: greedy at temperature 0, otherwise softmax at a
// temperature, optionally cut to the top k tokens and/or the smallest set holding top_p of the mass.
// Pure functions of (logits, options, u), plus a seeded Sampler that draws u from Philox per step.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowrank::models::gpt2 {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax, the lowest id among equal maxima)
  int64_t top_k = 0;         // keep the k most likely tokens (0: all)
  double top_p = 1.0;        // keep the most likely tokens whose mass first reaches top_p (1: all)
};

// Throws lowrank::Error with one line when an option is out of range (temperature < 0 or not
// finite, top_k < 0, top_p outside (0, 1]).
void check_sampling_options(const SamplingOptions& options);

// The distribution sampling draws from, as (token id, probability) pairs in the order the draw
// walks them: most likely first, ties by lower id. The filters apply in the order temperature,
// top-k, top-p (as Hugging Face's generate); probabilities are renormalised over what is kept.
// At temperature 0 it is the single argmax with probability 1. Logits of -inf are never kept;
// NaN logits or a row without a finite maximum throw.
std::vector<std::pair<int64_t, double>> sampling_distribution(std::span<const float> logits,
                                                              const SamplingOptions& options);

// One draw: `u` uniform in [0, 1) picks the token whose cumulative probability (in the order of
// sampling_distribution) first exceeds u. Without top-k/top-p it walks the logits in id order and
// costs one pass, no sort.
int64_t sample_token(std::span<const float> logits, const SamplingOptions& options, double u);
// The same on a 1-D logits tensor (any device, f32 or f64; copied to the host).
int64_t sample_token(const Tensor& logits, const SamplingOptions& options, double u);

// Draws u for step n from Philox(seed, counter n) with 53 bits, so a generation is a pure function
// of (seed, logits): resuming or replaying from step n gives the same tokens.
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options, uint64_t seed = 0);
  int64_t next(std::span<const float> logits);
  int64_t next(const Tensor& logits);
  int64_t steps() const { return step_; }
  const SamplingOptions& options() const { return options_; }
  // The uniform number of step `step` under `seed`.
  static double uniform(uint64_t seed, uint64_t step);

 private:
  SamplingOptions options_;
  uint64_t seed_;
  uint64_t step_ = 0;
};

}  // namespace lowrank::models::gpt2
