// Next-token choice: greedy, temperature, top-k and top-p, on host logits (see sampling.h).
#include "models/gpt2/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/rng.h"

namespace lowrank::models::gpt2 {

namespace {

// The maximum logit, after checking the row is usable.
float checked_max(std::span<const float> logits) {
  LR_CHECK(!logits.empty(), "sampling: empty logits row");
  float m = -INFINITY;
  for (size_t i = 0; i < logits.size(); ++i) {
    LR_CHECK(!std::isnan(logits[i]), "sampling: logit {} is NaN", i);
    m = std::max(m, logits[i]);
  }
  LR_CHECK(std::isfinite(m), "sampling: the largest logit is {}, not a finite number", m);
  return m;
}

int64_t argmax_lowest(std::span<const float> logits) {
  checked_max(logits);
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int64_t>(best);
}

bool filtered(const SamplingOptions& o, size_t vocab) {
  return (o.top_k > 0 && static_cast<size_t>(o.top_k) < vocab) || o.top_p < 1.0;
}

// Kept (id, probability) pairs, most likely first (ties by lower id), after temperature, top-k, top-p.
std::vector<std::pair<int64_t, double>> kept_tokens(std::span<const float> logits, const SamplingOptions& o) {
  if (o.temperature == 0.0) return {{argmax_lowest(logits), 1.0}};
  const double m = checked_max(logits);
  const size_t v = logits.size();
  // Ordering by logit equals ordering by probability at any positive temperature.
  auto before = [&](int64_t a, int64_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la != lb ? la > lb : a < b;
  };
  std::vector<int64_t> ids(v);
  std::iota(ids.begin(), ids.end(), int64_t{0});
  size_t keep = v;
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < v) keep = static_cast<size_t>(o.top_k);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(), before);
  ids.resize(keep);
  // Tokens at -inf have probability 0 and are never kept (the maximum is finite, so one remains).
  while (!ids.empty() && std::isinf(logits[static_cast<size_t>(ids.back())])) ids.pop_back();

  std::vector<std::pair<int64_t, double>> out;
  out.reserve(ids.size());
  double total = 0.0;
  for (int64_t id : ids) {
    const double p = std::exp((static_cast<double>(logits[static_cast<size_t>(id)]) - m) / o.temperature);
    out.emplace_back(id, p);
    total += p;
  }
  for (auto& [id, p] : out) p /= total;
  if (o.top_p < 1.0) {
    double cum = 0.0;
    size_t n = 0;
    while (n < out.size()) {
      cum += out[n].second;
      ++n;
      if (cum >= o.top_p) break;
    }
    out.resize(n);
    double kept = 0.0;
    for (const auto& e : out) kept += e.second;
    for (auto& [id, p] : out) p /= kept;
  }
  return out;
}

}  // namespace

void check_sampling_options(const SamplingOptions& o) {
  LR_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.0,
           "sampling: temperature must be a finite number >= 0, got {}", o.temperature);
  LR_CHECK(o.top_k >= 0, "sampling: top-k must be >= 0 (0: no limit), got {}", o.top_k);
  LR_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "sampling: top-p must be in (0, 1], got {}", o.top_p);
}

std::vector<std::pair<int64_t, double>> sampling_distribution(std::span<const float> logits,
                                                              const SamplingOptions& options) {
  check_sampling_options(options);
  return kept_tokens(logits, options);
}

int64_t sample_token(std::span<const float> logits, const SamplingOptions& o, double u) {
  check_sampling_options(o);
  LR_CHECK(u >= 0.0 && u < 1.0, "sampling: the uniform draw must be in [0, 1), got {}", u);
  if (o.temperature == 0.0) return argmax_lowest(logits);
  if (filtered(o, logits.size())) {
    auto kept = kept_tokens(logits, o);
    double cum = 0.0;
    for (const auto& [id, p] : kept) {
      cum += p;
      if (u < cum) return id;
    }
    return kept.back().first;  // u within rounding of 1
  }
  // Unfiltered: one pass for the normaliser, one walk in id order.
  const double m = checked_max(logits);
  double total = 0.0;
  for (float l : logits) total += std::exp((static_cast<double>(l) - m) / o.temperature);
  const double target = u * total;
  double cum = 0.0;
  int64_t last_possible = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double p = std::exp((static_cast<double>(logits[i]) - m) / o.temperature);
    if (p <= 0.0) continue;
    cum += p;
    last_possible = static_cast<int64_t>(i);
    if (target < cum) return last_possible;
  }
  return last_possible;
}

int64_t sample_token(const Tensor& logits, const SamplingOptions& options, double u) {
  LR_CHECK(logits.defined() && logits.dim() == 1, "sampling: logits must be a 1-D row, got {} axes",
           logits.defined() ? logits.dim() : 0);
  LR_CHECK(logits.dtype() == DType::F32 || logits.dtype() == DType::F64, "sampling: logits must be f32 or f64, got {}",
           dtype_name(logits.dtype()));
  std::vector<float> row = logits.dtype() == DType::F32 ? logits.to_vector<float>() : [&] {
    std::vector<double> d = logits.to_vector<double>();
    return std::vector<float>(d.begin(), d.end());
  }();
  return sample_token(std::span<const float>(row), options, u);
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : options_(options), seed_(seed) {
  check_sampling_options(options_);
}

double Sampler::uniform(uint64_t seed, uint64_t step) {
  const Philox4 r = philox4x32_10(step, seed);
  const uint64_t hi = r.v[0] >> 5, lo = r.v[1] >> 6;  // 27 + 26 bits
  return static_cast<double>((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

int64_t Sampler::next(std::span<const float> logits) {
  return sample_token(logits, options_, uniform(seed_, step_++));
}

int64_t Sampler::next(const Tensor& logits) {
  const double u = uniform(seed_, step_++);
  return sample_token(logits, options_, u);
}

}  // namespace lowrank::models::gpt2
