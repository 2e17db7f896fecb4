// Every op of core/op_list.h that records an autograd Node has a central-difference gradient
// check in this test program: the LR_GRADCHECK_TESTs name the ops they check (and their runs
// prove it), and tests/support/gradcheck.h lists the ops without one, each with the reason.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/op_list.h"
#include "core/ops.h"
#include "support/gradcheck.h"

using namespace lowrank;
using Inputs = std::vector<Tensor>;

namespace {

const test::NoGradcheck* listed(OpKind k) {
  for (const test::NoGradcheck& e : test::kOpsWithoutCpuGradcheck)
    if (e.op == k) return &e;
  return nullptr;
}

}  // namespace

TEST(GradcheckCoverage, EveryOpWithABackwardHasAGradcheck) {
  std::string missing;
  for (int i = 0; i < static_cast<int>(OpKind::Count); ++i) {
    const OpKind k = static_cast<OpKind>(i);
    if (!listed(k) && !test::ops_declared_checked().count(k)) missing += std::string(" ") + op_name(k);
  }
  EXPECT_TRUE(missing.empty()) << "ops of core/op_list.h without a gradient check:" << missing
                               << "\nadd an LR_GRADCHECK_TEST naming them under tests/core, or list them in "
                                  "kOpsWithoutCpuGradcheck (tests/support/gradcheck.h) with the reason";
}

TEST(GradcheckCoverage, NoOpIsBothListedAndChecked) {
  for (const test::NoGradcheck& e : test::kOpsWithoutCpuGradcheck)
    EXPECT_FALSE(test::ops_declared_checked().count(e.op))
        << op_name(e.op) << " is listed as having no gradcheck (" << e.why << ") but an LR_GRADCHECK_TEST names it";
}

// What makes a declaration honest: an op that no gradcheck graph reached is reported.
TEST(GradcheckCoverage, AnOpNoGraphReachedIsReported) {
  test::ops_seen_by_gradcheck().clear();
  EXPECT_TRUE(test::gradcheck([](const Inputs& x) { return exp(x[0]); }, {test::random_f64({3}, 1)}));
  EXPECT_TRUE(test::gradchecks_reached({OpKind::Exp}));
  const ::testing::AssertionResult miss = test::gradchecks_reached({OpKind::Exp, OpKind::Softmax});
  EXPECT_FALSE(miss);
  EXPECT_NE(std::string(miss.message()).find("Softmax"), std::string::npos) << miss.message();
}

// What keeps the list honest: a graph holding a Node of an op listed as recording none fails.
TEST(GradcheckCoverage, AListedOpWithANodeFails) {
  const ::testing::AssertionResult r = test::gradcheck(
      [](const Inputs& x) {
        Tensor out = mul(x[0], 1.0).detach();
        record(OpKind::Svd, out, {x[0]}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
        return out;
      },
      {test::random_f64({3}, 2)});
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("Svd"), std::string::npos) << r.message();
}
