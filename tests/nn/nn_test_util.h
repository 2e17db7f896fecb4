// Helpers shared by the nn tests: f64 central-difference gradient checks and small data.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"

namespace lowrank::nn_test {

// DESIGN.md's gradient-check settings: f64 central differences.
constexpr double kGradEps = 1e-6;
constexpr double kGradAtol = 1e-5;
constexpr double kGradRtol = 1e-3;

// Checks d loss() / d t for every element of each tensor in `wrt` (f64 leaves that require grad)
// against central differences of loss(), a scalar built from them.
inline void expect_gradients_match(const std::function<Tensor()>& loss, const std::vector<Tensor>& wrt) {
  for (const Tensor& t : wrt) {
    Tensor h = t;
    h.zero_grad();
  }
  loss().backward();
  for (size_t k = 0; k < wrt.size(); ++k) {
    Tensor t = wrt[k];
    ASSERT_TRUE(t.grad().defined()) << "no gradient for input " << k;
    std::vector<double> analytic = t.grad().to_vector<double>();
    double* p = t.data<double>();
    ASSERT_TRUE(t.is_contiguous());
    for (int64_t i = 0; i < t.numel(); ++i) {
      double keep = p[i];
      double up, down;
      {
        NoGradGuard ng;
        p[i] = keep + kGradEps;
        up = loss().item();
        p[i] = keep - kGradEps;
        down = loss().item();
        p[i] = keep;
      }
      double numeric = (up - down) / (2 * kGradEps);
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, kGradAtol + kGradRtol * std::abs(numeric))
          << "input " << k << " element " << i;
    }
  }
}

inline std::vector<float> to_floats(const Tensor& t) {
  return t.contiguous().to_vector<float>();
}

// The message of the lowrank::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace lowrank::nn_test
