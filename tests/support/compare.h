// The one way tests compare tensors: Tol (relative + absolute, as torch.allclose), the named
// tolerances with the reason for each, all_close / all_equal, and small measures of a tensor.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/ops.h"

namespace lowrank::test {

// |got - want| <= atol + rtol * |want|, element by element (torch.allclose's rule). One number
// converts to the same rtol and atol: a tolerance relative to values of 1 and more.
struct Tol {
  double rtol = 0, atol = 0;
  constexpr Tol() = default;
  constexpr Tol(double r, double a) : rtol(r), atol(a) {}
  constexpr Tol(double both) : rtol(both), atol(both) {}  // NOLINT: implicit on purpose, see above
};

// Equal to the bit (results that involve no rounding: copies, integer values, masks).
constexpr Tol kExact{0, 0};
// Hand-worked values (one number: the same rtol and atol). In f32, short computations agree to
// a few ulps of values near 1..100; in f64 they differ only by rounding.
constexpr double kF32Tol = 1e-5;
constexpr double kF64Tol = 1e-12;
inline double tol_for(DType t) {
  return t == DType::F32 ? kF32Tol : kF64Tol;
}

// CUDA against CPU.
// Elementwise math: CUDA's libdevice exp/log/tanh/pow are within 2 ulp of glibc's, and one op
// rounds once: a few f32 ulps. f64: the same ulps at f64 scale.
constexpr Tol kElemF32{1e-5, 1e-6};
constexpr Tol kElemF64{1e-12, 1e-14};
// Reductions and row ops (softmax, layer norm): the sum order differs (tree vs sequential);
// f64 accumulation on both sides leaves the last f32 rounding and a few transcendental ulps.
constexpr Tol kRowF32{2e-5, 1e-6};
constexpr Tol kRowF64{1e-11, 1e-13};
// Products over K terms in f32 (cuBLAS, our tiled kernels, OpenBLAS each sum in their own
// order): error grows like sqrt(K) ulps of the terms; atol is relative to the output's scale:
// pass it through scaled().
constexpr Tol kGemmF32{1e-4, 1e-5};
constexpr Tol kGemmF64{1e-11, 1e-13};
inline Tol elem_tol(DType t) {
  return t == DType::F32 ? kElemF32 : kElemF64;
}
inline Tol row_tol(DType t) {
  return t == DType::F32 ? kRowF32 : kRowF64;
}
inline Tol gemm_tol(DType t) {
  return t == DType::F32 ? kGemmF32 : kGemmF64;
}

// Largest |v| of a tensor (for scaling absolute tolerances).
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// `tol` with its atol multiplied by the scale of `want` (at least 1): for sums of many terms,
// whose rounding error grows with the size of the terms.
inline Tol scaled(Tol tol, const Tensor& want) {
  return {tol.rtol, tol.atol * std::max(1.0, max_abs(want))};
}

// Largest |a - b| over all elements; shapes must match (a mismatch fails the test and returns inf).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    ADD_FAILURE() << "max_abs_diff: shapes " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
    return std::numeric_limits<double>::infinity();
  }
  const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m;
}

// Every element of `got` (row-major) against `want` within `tol`; NaN matches only NaN. The
// failure names `what`, the count, the worst error and the first few mismatches.
inline ::testing::AssertionResult all_close(const Tensor& got, const std::vector<double>& want, Tol tol,
                                            const std::string& what = "") {
  const std::string label = what.empty() ? "" : what + ": ";
  const std::vector<double> g = got.to_vector<double>();
  if (g.size() != want.size())
    return ::testing::AssertionFailure() << label << "size " << g.size() << " vs expected " << want.size();
  int bad = 0;
  std::string first;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(want[i]);
    const double err = std::abs(g[i] - want[i]);
    if (both_nan || err <= tol.atol + tol.rtol * std::abs(want[i])) continue;
    if (std::isnan(err) || err > worst) worst = err;
    if (bad++ < 5)
      first += " [" + std::to_string(i) + "] got " + std::to_string(g[i]) + " want " + std::to_string(want[i]) + ";";
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << label << bad << " of " << g.size() << " elements differ (worst " << worst
                                       << ", rtol " << tol.rtol << ", atol " << tol.atol << "):" << first;
}

// The same, tensor against tensor: the shapes must match too.
inline ::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, Tol tol,
                                            const std::string& what = "") {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << (what.empty() ? "" : what + ": ") << "shape " << shape_str(got.shape())
                                         << " vs " << shape_str(want.shape());
  return all_close(got, want.to_vector<double>(), tol, what);
}

// Equality element by element as T (for integer results, masks and Philox uniforms).
template <class T>
::testing::AssertionResult all_equal(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  const std::vector<T> g = got.to_vector<T>(), w = want.to_vector<T>();
  for (size_t i = 0; i < g.size(); ++i)
    if (!(g[i] == w[i])) return ::testing::AssertionFailure() << "element " << i << ": " << g[i] << " vs " << w[i];
  return ::testing::AssertionSuccess();
}

// Same shape, dtype and f32 bit patterns (NaNs and signed zeros included): for runs that must be
// reproducible to the bit.
inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i)
    if (std::memcmp(&x[i], &y[i], sizeof(float)) != 0) return false;
  return true;
}

inline std::vector<float> to_floats(const Tensor& t) {
  return t.contiguous().to_vector<float>();
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

}  // namespace lowrank::test
