// Autoregressive generation from a GPT-2: with a KV cache (each new token costs one position) or
// without one (each token runs the whole context again; kept for measuring and as the oracle),
// streaming every token to a callback as soon as it is chosen.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "models/gpt2/model.h"
#include "models/gpt2/sampling.h"

namespace lowrank::models::gpt2 {

struct GenerateOptions {
  int64_t max_tokens = 100;  // new tokens at most
  SamplingOptions sampling;
  uint64_t seed = 0;  // the Sampler's seed: the same seed and model give the same tokens
  bool kv_cache = true;
  int64_t stop_token = -1;  // stop after emitting this id (e.g. <|endoftext|>); -1: never
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // the new tokens (the prompt not included)
  bool stopped = false;         // ended on stop_token or because the callback said so
  double prefill_seconds = 0;   // the first forward over the prompt (with the cache)
  double seconds = 0;           // the whole generation, prefill included
  int64_t context_refills = 0;  // times the context window was full and was cut to its last half
};

// Called with each new token as soon as it is chosen; return false to stop.
using TokenCallback = std::function<bool(int64_t token)>;

// Generates after `prompt` (non-empty, ids in the model's vocabulary) in eval mode, without
// autograd. The model sees at most n_ctx positions: when the context is full, it keeps its last
// n_ctx / 2 tokens and goes on from there (with the cache: refilled by one forward). Both modes
// follow the same window rule, so they compute the same logits up to float rounding and give the
// same tokens at temperature 0 (and in practice under the same seed).
GenerateResult generate(Gpt2& model, const std::vector<int64_t>& prompt, const GenerateOptions& options,
                        const TokenCallback& on_token = {});

}  // namespace lowrank::models::gpt2
