// The handwritten CUDA LoRA kernels against the CPU op (its OpenBLAS twin), forward and backward:
// ranks 1, 5, 64, 80; batch sizes that no tile size divides; with and without bias; W frozen
// and trainable; base_scale 0.9, 1 and 0; shapes large enough to take every tile shape and the
// split-K path.
#include <gtest/gtest.h>

#include <sstream>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

struct LoraCase {
  int64_t m, in, out, r;
  bool bias, train_w;
  double base_scale;
};

std::string case_name(const LoraCase& c) {
  std::ostringstream os;  // (string concatenation here trips a GCC 12 -Wrestrict false positive)
  os << "m" << c.m << "_in" << c.in << "_out" << c.out << "_r" << c.r << (c.bias ? "_bias" : "")
     << (c.train_w ? "_trainW" : "")
     << (c.base_scale == 0.9   ? "_s09"
         : c.base_scale == 0.0 ? "_s0"
                               : "_s1");
  return os.str();
}

const std::vector<LoraCase>& lora_cases() {
  static const std::vector<LoraCase> kCases = {
      {1, 16, 24, 1, true, false, 0.9},      {7, 70, 130, 5, true, true, 0.9},
      {33, 128, 40, 64, false, false, 1.0},  {300, 96, 200, 80, true, true, 0.9},
      {65, 129, 17, 8, true, false, 0.0},    {1000, 256, 300, 16, true, true, 0.9},  // split-K gradients
      {2048, 64, 1152, 4, true, false, 0.9},                                         // 128x128 tiles for y
      {12, 768, 768, 64, true, false, 0.9},                                          // few rows: 16-row tiles
      {0, 32, 48, 4, true, true, 0.9},                                               // an empty batch
  };
  return kCases;
}

using LoraParam = std::tuple<size_t, DType>;

class CudaLora : public ::testing::TestWithParam<LoraParam> {};

TEST_P(CudaLora, FusedKernelsMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype] = GetParam();
  const LoraCase& c = lora_cases()[ci];
  const uint64_t seed = 20000 + ci * 10;
  const double scale = 16.0 / static_cast<double>(c.r);
  Tensor x = random_cpu({c.m, c.in}, dtype, seed), w = random_cpu({c.out, c.in}, dtype, seed + 1, 0.1);
  Tensor b = random_cpu({c.out}, dtype, seed + 2), a = random_cpu({c.r, c.in}, dtype, seed + 3, 0.1);
  Tensor bm = random_cpu({c.out, c.r}, dtype, seed + 4, 0.1);
  Tensor g = random_cpu({c.m, c.out}, dtype, seed + 5);

  Tensor xc = cpu_leaf(x), wc = cpu_leaf(w, c.train_w), bc = cpu_leaf(b, c.train_w), ac = cpu_leaf(a),
         bmc = cpu_leaf(bm);
  Tensor xd = on_device(x, true), wd = on_device(w, c.train_w), bd = on_device(b, c.train_w), ad = on_device(a, true),
         bmd = on_device(bm, true);
  Tensor yc = lora_linear(xc, wc, c.bias ? bc : Tensor(), ac, bmc, scale, c.base_scale);
  Tensor yd = lora_linear(xd, wd, c.bias ? bd : Tensor(), ad, bmd, scale, c.base_scale);
  const Tol tol = gemm_tol(dtype);
  auto close = [&](const Tensor& got, const Tensor& want) { return all_close(got, want, scaled(tol, want)); };
  EXPECT_TRUE(close(yd, yc)) << "y";
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  EXPECT_TRUE(close(xd.grad(), xc.grad())) << "gx";
  EXPECT_TRUE(close(ad.grad(), ac.grad())) << "gA";
  EXPECT_TRUE(close(bmd.grad(), bmc.grad())) << "gB";
  if (c.train_w) {
    EXPECT_TRUE(close(wd.grad(), wc.grad())) << "gW";
    if (c.bias) {
      EXPECT_TRUE(close(bd.grad(), bc.grad())) << "gb";
    }
  } else {
    EXPECT_FALSE(wd.grad().defined());
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaLora,
                         ::testing::Combine(case_indices(lora_cases()), ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<LoraParam>& info) {
                           return case_name(lora_cases()[std::get<0>(info.param)]) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

// A 3-D input (the op folds its leading axes) and a fresh draw per run agree too.
TEST(CudaLora, LeadingAxesFoldIntoRows) {
  LR_REQUIRE_TEST_DEVICE();
  Tensor x = random_cpu({3, 5, 40}, DType::F32, 31), w = random_cpu({24, 40}, DType::F32, 32, 0.2);
  Tensor a = random_cpu({6, 40}, DType::F32, 33, 0.2), bm = random_cpu({24, 6}, DType::F32, 34, 0.2);
  Tensor yc = lora_linear(x, w, Tensor(), a, bm, 2.0, 0.9);
  Tensor yd = lora_linear(on_device(x), on_device(w), Tensor(), on_device(a), on_device(bm), 2.0, 0.9);
  EXPECT_TRUE(all_close(yd, yc, {kGemmF32.rtol, kGemmF32.atol * std::max(1.0, max_abs(yc))}));
}

}  // namespace
