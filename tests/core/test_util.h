// Small helpers for the core tests: compare a tensor with expected values, expect a lowrank::Error
// whose message contains given words, and a plain host reference for strided tensors.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/ops.h"

namespace lowrank::testing {

// f32 results of short hand-worked computations agree to a few ulps of values near 1..100.
constexpr double kF32Tol = 1e-5;
// f64 hand-worked values differ only by rounding.
constexpr double kF64Tol = 1e-12;

inline double tol_for(DType t) {
  return t == DType::F32 ? kF32Tol : kF64Tol;
}

inline ::testing::AssertionResult values_near(const Tensor& t, const std::vector<double>& want, double tol) {
  std::vector<double> got = t.to_vector<double>();
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs expected " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(got[i]) && std::isnan(want[i]);
    if (!both_nan && !(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i]))))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", expected " << want[i] << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult tensors_near(const Tensor& a, const Tensor& b, double tol) {
  if (a.shape() != b.shape())
    return ::testing::AssertionFailure() << "shapes " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  return values_near(a, b.to_vector<double>(), tol);
}

// Runs `fn`, which must throw lowrank::Error with every word of `words` in its message.
template <class F>
::testing::AssertionResult throws_with(F&& fn, std::initializer_list<std::string> words) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& w : words)
      if (m.find(w) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << w << "\": " << m;
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-lowrank exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// Element j (row-major) of a tensor, read through its strides from a host copy of its storage
// span; an independent path from the kernels' own strided loops.
inline std::vector<double> strided_values(const Tensor& t) {
  Tensor base = Tensor::view_of(t.storage(), {static_cast<int64_t>(t.storage()->nbytes() / dtype_size(t.dtype()))}, {1},
                                0, t.dtype());
  std::vector<double> all = base.to_vector<double>(), out(static_cast<size_t>(t.numel()));
  for (int64_t j = 0; j < t.numel(); ++j) {
    int64_t off = t.offset(), rem = j;
    for (int64_t d = t.dim() - 1; d >= 0; --d) {
      off += (rem % t.shape()[d]) * t.strides()[d];
      rem /= t.shape()[d];
    }
    out[static_cast<size_t>(j)] = all[static_cast<size_t>(off)];
  }
  return out;
}

}  // namespace lowrank::testing
