// Central-difference gradient checks (docs/design.md, test kind 2), for every test suite:
//
//   #include "support/gradcheck.h"
//   Tensor a = lowrank::test::random_f64({3, 4}, 1), b = lowrank::test::random_f64({4}, 2);
//   EXPECT_TRUE(lowrank::test::gradcheck([](const std::vector<Tensor>& x) { return mul(x[0], x[1]); }, {a, b}));
//
// `f` maps the inputs to a Tensor of any shape and must be deterministic. Every f64 input is
// checked: gradcheck marks it requires_grad, backpropagates L = sum(f(x) * w) for a fixed random w
// (so every output element matters), and compares each element's gradient with
// (L(x + eps) - L(x - eps)) / (2 eps), within atol + rtol * |numeric|. Inputs of other dtypes
// (ids, labels) pass through unchecked. An input may be a strided view (transposed, sliced with a
// step) but must not overlap itself: build expanded views inside f. CPU tensors only.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/op_list.h"
#include "core/ops.h"

namespace lowrank::test {

struct GradcheckOptions {
  // docs/design.md: eps 1e-6 keeps f64 truncation error (~eps^2) and rounding error (~1e-16 / eps)
  // both near 1e-10, far below atol.
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t weight_seed = 0x5eed;  // seed of the output weights w
  int max_reports = 5;            // mismatches listed in the failure message
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Standard-normal f64 tensor from `seed` (a shorthand for test inputs).
inline Tensor random_f64(const Shape& shape, uint64_t seed) {
  return randn(shape, seed, 0, DType::F64);
}

// ---- coverage: which ops the gradient checks reach (tests/core/test_gradcheck_coverage.cpp)

// The ops of core/op_list.h that get no CPU gradcheck, each with the reason. Every other op must
// be named by an LR_GRADCHECK_TEST under tests/core. gradcheck() fails when a graph holds a Node
// of an op listed here with records_node = false, so the list cannot go stale when one gains a
// backward.
struct NoGradcheck {
  OpKind op;
  bool records_node;
  const char* why;
};
inline constexpr NoGradcheck kOpsWithoutCpuGradcheck[] = {
    {OpKind::Compare, false, "a 0/1 result: no gradient"},
    {OpKind::Argmax, false, "integer indices: no gradient"},
    {OpKind::Copy, false, "copy_ into an existing tensor; clone() records Contiguous"},
    {OpKind::Einsum, false, "composed of permute/reshape/matmul, whose Nodes carry its gradient"},
    {OpKind::Dropout, false, "composed of compare and mul, whose Nodes carry its gradient"},
    {OpKind::AdamStep, false, "an optimizer update, under NoGradGuard"},
    {OpKind::Fill, false, "constants: no input"},
    {OpKind::Random, false, "random numbers: no input"},
    {OpKind::Svd, false, "analysis and initialisation only: no backward"},
    {OpKind::ToDevice, true, "needs a second device: tests/cuda/test_runtime.cpp gradchecks it through the GPU"},
};

// The ops whose Nodes appeared in the graphs gradcheck() built in this process.
inline std::set<OpKind>& ops_seen_by_gradcheck() {
  static std::set<OpKind> seen;
  return seen;
}

// The ops that this test program's LR_GRADCHECK_TESTs name (registered before main runs).
inline std::set<OpKind>& ops_declared_checked() {
  static std::set<OpKind> declared;
  return declared;
}

inline bool declare_gradcheck_ops(std::initializer_list<OpKind> ops) {
  ops_declared_checked().insert(ops.begin(), ops.end());
  return true;
}

// The kinds of every Node in the graph that produced `y`.
inline std::set<OpKind> graph_ops(const Tensor& y) {
  std::set<OpKind> kinds;
  std::set<const Node*> done;
  std::vector<const Node*> todo;
  if (y.grad_fn()) todo.push_back(y.grad_fn().get());
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    if (!done.insert(n).second) continue;
    kinds.insert(n->kind);
    for (const auto& in : n->inputs)
      if (in && in->grad_fn) todo.push_back(in->grad_fn.get());
  }
  return kinds;
}

// Success when every op of `declared` appeared in a gradcheck graph since ops_seen_by_gradcheck()
// was last cleared.
inline ::testing::AssertionResult gradchecks_reached(std::initializer_list<OpKind> declared) {
  std::string missing;
  for (OpKind k : declared)
    if (!ops_seen_by_gradcheck().count(k)) missing += std::string(" ") + op_name(k);
  if (missing.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "named as gradchecked, but no gradcheck graph held a Node of:" << missing;
}

inline ::testing::AssertionResult gradcheck(const GradcheckFn& f, std::vector<Tensor> inputs,
                                            const GradcheckOptions& opt = {}) {
  std::vector<bool> checked(inputs.size(), false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || inputs[i].dtype() != DType::F64) continue;
    if (!inputs[i].device().is_cpu())
      return ::testing::AssertionFailure() << "gradcheck: input " << i << " is not on the CPU";
    // A fresh leaf handle on the same storage: the caller's tensor keeps no grad or history.
    inputs[i] = inputs[i].detach();
    inputs[i].requires_grad_();
    checked[i] = true;
  }
  Tensor y = f(inputs);
  if (!y.defined()) return ::testing::AssertionFailure() << "gradcheck: f returned an undefined tensor";
  const std::set<OpKind> kinds = graph_ops(y);
  for (const NoGradcheck& e : kOpsWithoutCpuGradcheck)
    if (!e.records_node && kinds.count(e.op))
      return ::testing::AssertionFailure() << "gradcheck: the graph holds a " << op_name(e.op)
                                           << " Node, but tests/support/gradcheck.h lists the op as recording none ("
                                           << e.why << "): give it an LR_GRADCHECK_TEST instead";
  ops_seen_by_gradcheck().insert(kinds.begin(), kinds.end());
  if (y.dtype() != DType::F64)
    return ::testing::AssertionFailure() << "gradcheck: f returned " << dtype_name(y.dtype()) << ", needs f64";
  Tensor w = randn(y.shape(), opt.weight_seed, 0, DType::F64, y.device());
  Tensor loss = sum(mul(y, w));
  if (loss.requires_grad()) loss.backward();

  auto eval = [&] {
    NoGradGuard ng;
    return sum(mul(f(inputs), w)).item();
  };
  std::ostringstream report;
  int bad = 0;
  int64_t compared = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!checked[i]) continue;
    Tensor& x = inputs[i];
    const int64_t n = x.numel();
    std::vector<double> analytic(static_cast<size_t>(n), 0.0);
    if (x.grad().defined()) {
      if (x.grad().shape() != x.shape())
        return ::testing::AssertionFailure() << "gradcheck: input " << i << " has shape " << shape_str(x.shape())
                                             << " but its gradient " << shape_str(x.grad().shape());
      analytic = x.grad().to_vector<double>();
    }
    double* base = static_cast<double*>(x.raw_data());
    for (int64_t j = 0; j < n; ++j) {
      // Row-major element j of a strided view.
      int64_t off = 0, rem = j;
      for (int64_t d = x.dim() - 1; d >= 0; --d) {
        off += (rem % x.shape()[d]) * x.strides()[d];
        rem /= x.shape()[d];
      }
      double& v = base[off];
      const double orig = v;
      v = orig + opt.eps;
      const double lp = eval();
      v = orig - opt.eps;
      const double lm = eval();
      v = orig;
      const double numeric = (lp - lm) / (2 * opt.eps);
      const double a = analytic[static_cast<size_t>(j)];
      ++compared;
      if (!(std::abs(a - numeric) <= opt.atol + opt.rtol * std::abs(numeric))) {
        if (bad++ < opt.max_reports)
          report << "\n  input " << i << " " << shape_str(x.shape()) << " element " << j << ": analytic " << a
                 << ", numeric " << numeric;
      }
    }
  }
  if (compared == 0) return ::testing::AssertionFailure() << "gradcheck: no f64 input to check";
  if (bad > 0)
    return ::testing::AssertionFailure() << "gradcheck: " << bad << " of " << compared << " gradient elements differ"
                                         << report.str();
  return ::testing::AssertionSuccess();
}

// The same settings for a closure over leaves: checks d loss() / d t for every element of each
// tensor in `wrt` (contiguous f64 leaves that require grad) against central differences of loss(),
// a scalar built from them. For models whose parameters are not inputs of one function.
inline void expect_gradients_match(const std::function<Tensor()>& loss, const std::vector<Tensor>& wrt,
                                   const GradcheckOptions& opt = {}) {
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
        p[i] = keep + opt.eps;
        up = loss().item();
        p[i] = keep - opt.eps;
        down = loss().item();
        p[i] = keep;
      }
      double numeric = (up - down) / (2 * opt.eps);
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, opt.atol + opt.rtol * std::abs(numeric))
          << "input " << k << " element " << i;
    }
  }
}

}  // namespace lowrank::test

// A TEST whose gradcheck() calls must reach, as autograd Nodes, every OpKind listed after its name:
//   LR_GRADCHECK_TEST(Gradcheck, Softmax, OpKind::Softmax, OpKind::LogSoftmax) { ... }
// The ops count as covered for this test program's coverage test; the run proves the claim.
#define LR_GRADCHECK_TEST(suite, name, ...)                                   \
  static void lr_gradcheck_body_##suite##_##name();                           \
  [[maybe_unused]] static const bool lr_gradcheck_declared_##suite##_##name = \
      ::lowrank::test::declare_gradcheck_ops({__VA_ARGS__});                  \
  TEST(suite, name) {                                                         \
    ::lowrank::test::ops_seen_by_gradcheck().clear();                         \
    lr_gradcheck_body_##suite##_##name();                                     \
    if (!::testing::Test::IsSkipped()) {                                      \
      EXPECT_TRUE(::lowrank::test::gradchecks_reached({__VA_ARGS__}));        \
    }                                                                         \
  }                                                                           \
  static void lr_gradcheck_body_##suite##_##name()
