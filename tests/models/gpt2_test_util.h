// Shared helpers of the GPT-2 model, checkpoint and reference tests: tiny configs, random ids,
// and tensor comparison with named tolerances (|got - want| <= atol + rtol·|want|).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/gpt2/config.h"

namespace lowrank::gpt2_test {

// 2 layers, 2 heads of 8, context 16, vocab 50: every path of the model in well under a millisecond.
inline models::gpt2::Config tiny_config(double dropout = 0.0) {
  models::gpt2::Config c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.n_ctx = 16, c.vocab_size = 50, c.dropout = dropout;
  return c;
}

// Deterministic ids in [0, vocab) (a simple LCG; the values only need to be fixed and varied).
inline Tensor random_ids(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(b * t));
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab));
  }
  return Tensor::from_vector(v, {b, t});
}

struct Tol {
  double rtol, atol;
};

inline ::testing::AssertionResult close(const Tensor& got, const Tensor& want, Tol tol, const std::string& what = "") {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(got.shape()) << " vs "
                                         << shape_str(want.shape());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - w[i]);
    if (err <= tol.atol + tol.rtol * std::abs(w[i])) continue;
    if (bad++ == 0) first = i;
    if (!(err <= worst)) worst = err;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << g.size() << " elements off (rtol "
                                       << tol.rtol << ", atol " << tol.atol << "); first [" << first << "] got "
                                       << g[first] << " want " << w[first] << "; worst |err| " << worst;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i)
    if (std::memcmp(&x[i], &y[i], sizeof(float)) != 0) return false;
  return true;
}

}  // namespace lowrank::gpt2_test
