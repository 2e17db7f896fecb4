// CUDA (cuBLAS) against CPU (OpenBLAS) for matmul through the op API: 2-D, transposed views,
// batched, broadcast batches, the folded [..., m, k] x [k, n] path, odd sizes; with backward;
// and einsum, which lowers to the same batched GEMMs.
#include <gtest/gtest.h>

#include <functional>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

struct MatmulCase {
  const char* name;
  Shape a, b;
  std::function<Tensor(const Tensor&)> view_a, view_b;
};

Tensor same(const Tensor& t) {
  return t;
}
Tensor mt(const Tensor& t) {
  return t.mT();
}

const std::vector<MatmulCase>& matmul_cases() {
  static const std::vector<MatmulCase> kCases = {
      {"small", {5, 7}, {7, 3}, same, same},
      {"square_odd", {65, 129}, {129, 67}, same, same},
      {"a_transposed", {129, 65}, {129, 67}, mt, same},
      {"b_transposed", {65, 129}, {67, 129}, same, mt},
      {"both_transposed", {129, 65}, {67, 129}, mt, mt},
      {"batched", {4, 5, 7}, {4, 7, 3}, same, same},
      {"batched_transposed", {4, 7, 5}, {4, 3, 7}, mt, mt},
      {"folded", {3, 11, 37}, {37, 19}, same, same},
      {"broadcast_batch", {2, 1, 5, 7}, {3, 7, 4}, same, same},
      {"vector_like", {1, 300}, {300, 1}, same, same},
      {"sliced_rows", {40, 30}, {30, 20}, [](const Tensor& t) { return t.slice(0, 3, 40, 3); }, same},
  };
  return kCases;
}

using MatmulParam = std::tuple<size_t, DType>;

class CudaMatmul : public ::testing::TestWithParam<MatmulParam> {};

TEST_P(CudaMatmul, ForwardAndBackwardMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype] = GetParam();
  const MatmulCase& c = matmul_cases()[ci];
  const uint64_t seed = 3000 + ci * 11;
  Tensor a = random_cpu(c.a, dtype, seed), b = random_cpu(c.b, dtype, seed + 1);
  Tensor ac = cpu_leaf(a), bc = cpu_leaf(b), ad = on_device(a, true), bd = on_device(b, true);
  Tensor yc = matmul(c.view_a(ac), c.view_b(bc)), yd = matmul(c.view_a(ad), c.view_b(bd));
  const Tol tol = gemm_tol(dtype);
  EXPECT_TRUE(all_close(yd, yc, {tol.rtol, tol.atol * std::max(1.0, max_abs(yc))})) << c.name << " forward";
  Tensor g = random_cpu(yc.shape(), dtype, seed + 2);
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  EXPECT_TRUE(all_close(ad.grad(), ac.grad(), {tol.rtol, tol.atol * std::max(1.0, max_abs(ac.grad()))}))
      << c.name << " grad a";
  EXPECT_TRUE(all_close(bd.grad(), bc.grad(), {tol.rtol, tol.atol * std::max(1.0, max_abs(bc.grad()))}))
      << c.name << " grad b";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMatmul,
                         ::testing::Combine(case_indices(matmul_cases()), ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<MatmulParam>& info) {
                           return std::string(matmul_cases()[std::get<0>(info.param)].name) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

class CudaEinsum : public ::testing::TestWithParam<DType> {};

TEST_P(CudaEinsum, DenseEquationsMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  const Tol tol = gemm_tol(t);
  struct Eq {
    const char* eq;
    Shape a, b;
  };
  for (const Eq& e : {Eq{"abc,cd->abd", {2, 5, 8}, {8, 6}}, Eq{"abc,cde->abde", {2, 5, 8}, {8, 3, 4}},
                      Eq{"abcd,cde->abe", {2, 5, 3, 4}, {3, 4, 7}}}) {
    Tensor a = random_cpu(e.a, t, 61), b = random_cpu(e.b, t, 62);
    Tensor yc = einsum(e.eq, a, b), yd = einsum(e.eq, on_device(a), on_device(b));
    EXPECT_TRUE(all_close(yd, yc, {tol.rtol, tol.atol * std::max(1.0, max_abs(yc))})) << e.eq;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaEinsum, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

}  // namespace
