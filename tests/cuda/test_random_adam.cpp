// CUDA against CPU for Philox random tensors (uniforms bit for bit) and the fused Adam/AdamW step.
#include <gtest/gtest.h>

#include "core/dispatch.h"
#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

class CudaRandom : public ::testing::TestWithParam<DType> {};

TEST_P(CudaRandom, PhiloxGivesTheSameNumbers) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  for (uint64_t seed : {uint64_t{0}, uint64_t{42}, uint64_t{0xDEADBEEFCAFEull}}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{1} << 40}) {
      // Odd sizes: the last counter's four lanes are only partly used.
      const Shape shape{3, 1001};
      EXPECT_TRUE(all_equal<double>(rand(shape, seed, offset, t, test_device()), rand(shape, seed, offset, t)))
          << "uniform, seed " << seed << " offset " << offset;
      // Normals go through log/sqrt/sin/cos, whose last bit may differ between libm and CUDA's.
      EXPECT_TRUE(all_close(randn(shape, seed, offset, t, test_device()), randn(shape, seed, offset, t),
                            t == DType::F32 ? Tol{1e-6, 1e-7} : Tol{1e-13, 1e-15}))
          << "normal, seed " << seed << " offset " << offset;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaRandom, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

// dtype, weight decay, decoupled.
using AdamParam = std::tuple<DType, double, bool>;

class CudaAdam : public ::testing::TestWithParam<AdamParam> {};

TEST_P(CudaAdam, StepsMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [t, wd, decoupled] = GetParam();
  const Shape shape{37, 129};
  Tensor pc = random_cpu(shape, t, 800), mc = Tensor::zeros(shape, t), vc = Tensor::zeros(shape, t);
  Tensor pd = on_device(pc), md = on_device(mc), vd = on_device(vc);
  AdamArgs a;
  a.lr = 1e-2;
  a.weight_decay = wd;
  a.decoupled = decoupled;
  for (int64_t step = 1; step <= 5; ++step) {
    a.step = step;
    Tensor g = random_cpu(shape, t, 810 + static_cast<uint64_t>(step));
    adam_step_(pc, g, mc, vc, a);
    adam_step_(pd, on_device(g).mT().contiguous().mT(), md, vd, a);  // a strided gradient
  }
  // Five steps of a handful of roundings each; nvcc contracts to FMA where the CPU does not.
  const Tol tol = t == DType::F32 ? Tol{1e-5, 1e-6} : Tol{1e-13, 1e-15};
  EXPECT_TRUE(all_close(pd, pc, tol)) << "param";
  EXPECT_TRUE(all_close(md, mc, tol)) << "m";
  EXPECT_TRUE(all_close(vd, vc, tol)) << "v";
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaAdam,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F64), ::testing::Values(0.0, 0.1),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<AdamParam>& info) {
                           return std::string(dtype_label(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == 0.0 ? "_nodecay" : "_decay") +
                                  (std::get<2>(info.param) ? "_adamw" : "_adam");
                         });

}  // namespace
