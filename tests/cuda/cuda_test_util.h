// Helpers of the CUDA-vs-CPU suites: the device under test, the skip when it does not answer,
// fresh random inputs, and element-wise comparison with named tolerances.
//
// The device under test is cuda:0. LOWRANK_TEST_DEVICE=cpu points the same suites at the CPU
// (CPU against itself): that checks the tests' own logic on machines without a GPU.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/cuda/cuda_api.h"
#include "core/ops.h"

namespace lowrank::test {

inline Device test_device() {
  const char* env = std::getenv("LOWRANK_TEST_DEVICE");
  return env && *env ? Device::parse(env) : Device::cuda(0);
}

// The first statement of every CUDA test: skip (ctest counts it as skipped) when no GPU answers.
#define LR_REQUIRE_TEST_DEVICE()                                                   \
  do {                                                                             \
    if (::lowrank::test::test_device().is_cuda() && !::lowrank::cuda_available())  \
      GTEST_SKIP() << "no CUDA device: " << ::lowrank::cuda_unavailable_reason(0); \
  } while (0)

// Tolerances of CUDA against CPU, as |got - want| <= atol + rtol * |want|.
struct Tol {
  double rtol, atol;
};
// Elementwise math: CUDA's libdevice exp/log/tanh/pow are within 2 ulp of glibc's, and one op
// rounds once: a few f32 ulps. f64: the same ulps at f64 scale.
constexpr Tol kElemF32{1e-5, 1e-6};
constexpr Tol kElemF64{1e-12, 1e-14};
// Reductions and row ops (softmax, layer norm): the sum order differs (tree vs sequential);
// f64 accumulation on both sides leaves the last f32 rounding and a few transcendental ulps.
constexpr Tol kRowF32{2e-5, 1e-6};
constexpr Tol kRowF64{1e-11, 1e-13};
// Products over K terms in f32 (cuBLAS, our tiled kernels, OpenBLAS each sum in their own
// order): error grows like sqrt(K) ulps of the terms; atol is relative to the output's scale
// and multiplied by it at the call site.
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

// Checks shape, then every element; NaN matches only NaN. Reports the first few mismatches.
inline ::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, Tol tol) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  int bad = 0;
  std::string first;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(w[i]);
    const double err = std::abs(g[i] - w[i]);
    if (both_nan || err <= tol.atol + tol.rtol * std::abs(w[i])) continue;
    if (std::isnan(err) || err > worst) worst = err;
    if (bad++ < 5)
      first += " [" + std::to_string(i) + "] got " + std::to_string(g[i]) + " want " + std::to_string(w[i]) + ";";
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << g.size() << " elements differ (worst " << worst << ", rtol "
                                       << tol.rtol << ", atol " << tol.atol << "):" << first;
}

// Bitwise equality (for integer results, masks and Philox uniforms).
template <class T>
::testing::AssertionResult all_equal(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  const std::vector<T> g = got.to_vector<T>(), w = want.to_vector<T>();
  for (size_t i = 0; i < g.size(); ++i)
    if (!(g[i] == w[i])) return ::testing::AssertionFailure() << "element " << i << ": " << g[i] << " vs " << w[i];
  return ::testing::AssertionSuccess();
}

// A fresh random CPU tensor: normal(0, 1) * scale + shift, seeded per call site.
inline Tensor random_cpu(const Shape& shape, DType t, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  NoGradGuard ng;
  Tensor x = randn(shape, seed, 0, t);
  if (scale != 1.0) x = mul(x, scale);
  if (shift != 0.0) x = add(x, shift);
  return x;
}

// A copy of a CPU tensor on the device under test, as a new leaf.
inline Tensor on_device(const Tensor& cpu, bool requires_grad = false) {
  Tensor d = cpu.detach().to(test_device());
  if (requires_grad) d.requires_grad_();
  return d;
}

// A CPU leaf copy (so CPU and device graphs do not share autograd state).
inline Tensor cpu_leaf(const Tensor& cpu, bool requires_grad = true) {
  Tensor c = cpu.detach().clone();
  if (requires_grad) c.requires_grad_();
  return c;
}

inline const char* dtype_label(DType t) {
  return t == DType::F32 ? "f32" : "f64";
}

}  // namespace lowrank::test
