// The analyses on device tensors (the experiment's --device cuda): singular_basis and
// adapter_similarity run their SVDs where the tensors live (cuSOLVER on CUDA) and equal the CPU's;
// truncated_svd stays on the device; amplification_report and delta_report accept device inputs
// and compute in f64 on the CPU. Skips without a GPU; LOWRANK_TEST_DEVICE=cpu runs it on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"
#include "analysis/svd.h"
#include "core/ops.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::analysis;
using namespace lowrank::test;

namespace {

TEST(AnalysisOnDevice, AdapterSimilarityMatchesTheCpu) {
  LR_REQUIRE_TEST_DEVICE();
  // Two rank-8 A's [8, 48] sharing half their row space, so φ spans (0, 1).
  const Tensor shared = random_cpu({4, 48}, DType::F64, 1);
  const Tensor a1 = concat({shared, random_cpu({4, 48}, DType::F64, 2)}, 0);
  const Tensor a2 =
      concat({add(shared, mul(random_cpu({4, 48}, DType::F64, 3), 0.3)), random_cpu({4, 48}, DType::F64, 4)}, 0);
  const Tensor b1 = random_cpu({40, 8}, DType::F64, 5), b2 = random_cpu({40, 8}, DType::F64, 6);
  for (DType t : {DType::F64, DType::F32}) {
    const double tol = t == DType::F64 ? 1e-10 : 2e-4;
    const Tensor basis = singular_basis(on_device(a1.to(t)), AdapterSide::RightOfA);
    EXPECT_TRUE(basis.device() == test_device());
    EXPECT_EQ(basis.shape(), (Shape{48, 8}));
    const SimilarityGrid cpu = adapter_similarity(a1, a2);
    const SimilarityGrid dev = adapter_similarity(on_device(a1.to(t)), on_device(a2.to(t)));
    ASSERT_EQ(dev.values.size(), cpu.values.size());
    for (size_t k = 0; k < cpu.values.size(); ++k) EXPECT_NEAR(dev.values[k], cpu.values[k], tol) << k;
    const SimilarityGrid cpu_b = adapter_similarity(b1, b2, AdapterSide::LeftOfB);
    const SimilarityGrid dev_b = adapter_similarity(on_device(b1.to(t)), on_device(b2.to(t)), AdapterSide::LeftOfB);
    for (size_t k = 0; k < cpu_b.values.size(); ++k) EXPECT_NEAR(dev_b.values[k], cpu_b.values[k], tol) << k;
  }
}

TEST(AnalysisOnDevice, TruncatedSvdAndReportsTakeDeviceTensors) {
  LR_REQUIRE_TEST_DEVICE();
  const Tensor w = random_cpu({24, 20}, DType::F64, 7);
  const Tensor a = random_cpu({3, 20}, DType::F64, 8), b = random_cpu({24, 3}, DType::F64, 9);
  const TruncatedSvd dev = truncated_svd(on_device(w), 4);
  EXPECT_TRUE(dev.a.device() == test_device());
  EXPECT_TRUE(dev.b.device() == test_device());
  const Tensor diff = sub(dev.reconstruction().to(Device::cpu()), truncated_svd(w, 4).reconstruction());
  EXPECT_LT(std::sqrt(sum(mul(diff, diff)).item()), 1e-10);
  const AmplificationReport cpu_rep = amplification_report(w, a, b, 2.0, 5);
  const AmplificationReport dev_rep = amplification_report(on_device(w), on_device(a), on_device(b), 2.0, 5);
  EXPECT_NEAR(dev_rep.delta.amplification, cpu_rep.delta.amplification, 1e-10);
  EXPECT_NEAR(dev_rep.w.amplification, cpu_rep.w.amplification, 1e-10);
  EXPECT_NEAR(dev_rep.random.amplification, cpu_rep.random.amplification, 1e-10);
  const DeltaReport cpu_dr = delta_report(w, a, b, 2.0, 0.9);
  const DeltaReport dev_dr = delta_report(on_device(w), on_device(a), on_device(b), 2.0, 0.9);
  EXPECT_NEAR(dev_dr.relative_error, cpu_dr.relative_error, 1e-10);
}

}  // namespace
