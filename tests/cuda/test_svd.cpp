// cuSOLVER SVD against the CPU's LAPACKE: singular values, and singular vectors up to sign (both
// canonicalised), for tall, wide and square matrices in f32 and f64; and u·diag(s)·vt = a on the
// device itself.
#include <gtest/gtest.h>

#include "analysis/svd.h"
#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

using SvdParam = std::tuple<Shape, DType>;

class CudaSvd : public ::testing::TestWithParam<SvdParam> {};

TEST_P(CudaSvd, MatchesLapackUpToSign) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [shape, t] = GetParam();
  Tensor a = random_cpu(shape, t, 900 + static_cast<uint64_t>(shape[0] * 1000 + shape[1]));
  const analysis::Svd cpu = analysis::canonicalize_signs(analysis::svd(a));
  const analysis::Svd raw = analysis::svd(on_device(a));
  ASSERT_TRUE(raw.u.device() == test_device());
  const analysis::Svd dev = analysis::canonicalize_signs(raw);
  // Different algorithms (gesvd vs gesdd): singular values agree to a few ulps of s[0], vectors
  // to that over the gap between neighbouring singular values (random matrices keep it wide).
  const double s0 = max_abs(cpu.s);
  const Tol s_tol = t == DType::F32 ? Tol{0, 2e-5 * s0} : Tol{0, 1e-12 * s0};
  const Tol v_tol = t == DType::F32 ? Tol{0, 2e-3} : Tol{0, 1e-8};
  EXPECT_TRUE(all_close(dev.s, cpu.s, s_tol)) << "s";
  EXPECT_TRUE(all_close(dev.u, cpu.u, v_tol)) << "u";
  EXPECT_TRUE(all_close(dev.vt, cpu.vt, v_tol)) << "vt";
  // Reconstruction on the device.
  Tensor rec = matmul(mul(raw.u, raw.s), raw.vt);
  EXPECT_TRUE(all_close(rec, on_device(a), t == DType::F32 ? Tol{0, 1e-4 * s0} : Tol{0, 1e-12 * s0})) << "u s vt";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSvd,
                         ::testing::Combine(::testing::Values(Shape{7, 5}, Shape{5, 9}, Shape{64, 64}, Shape{100, 30},
                                                              Shape{16, 128}),
                                            ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<SvdParam>& info) {
                           const Shape& s = std::get<0>(info.param);
                           return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

// A transposed (non-contiguous) input factors like its contiguous copy.
TEST(CudaSvd, TransposedInput) {
  LR_REQUIRE_TEST_DEVICE();
  Tensor a = random_cpu({12, 20}, DType::F64, 950);
  const analysis::Svd x = analysis::canonicalize_signs(analysis::svd(on_device(a).mT()));
  const analysis::Svd y = analysis::canonicalize_signs(analysis::svd(a.mT().contiguous()));
  EXPECT_TRUE(all_close(x.s, y.s, {0, 1e-12 * max_abs(y.s)}));
  EXPECT_TRUE(all_close(x.u, y.u, {0, 1e-8}));
  EXPECT_TRUE(all_close(x.vt, y.vt, {0, 1e-8}));
}

}  // namespace
