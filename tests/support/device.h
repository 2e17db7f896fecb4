// The device a CUDA-vs-CPU suite tests, the skip when it does not answer, and fresh random inputs
// on either side.
//
// The device under test is cuda:0. LOWRANK_TEST_DEVICE=cpu points the same suites at the CPU
// (CPU against itself): that checks the tests' own logic on machines without a GPU.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
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

// The indices of a suite's case list, for INSTANTIATE_TEST_SUITE_P: a case added to the list is
// a test added, with no count to keep in step.
template <class T>
auto case_indices(const std::vector<T>& cases) {
  return ::testing::Range<size_t>(0, cases.size());
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
