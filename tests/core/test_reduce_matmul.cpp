// Reductions (sum, mean, max, argmax over any axes, keepdim, sum_to) and matmul (2-D, batched,
// broadcast batch axes, transposed and sliced operands) against hand-worked values and plain loops.
#include <gtest/gtest.h>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::strided_values;
using lowrank::test::tol_for;

namespace {

class ReduceMatmul : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  Tensor iota(const Shape& s) const { return Tensor::arange(shape_numel(s), dt()).reshape(s); }
};

// Plain triple loop over host copies: c[b] = a[b] @ b[b] for [B, m, k] x [B, k, n] values.
std::vector<double> host_matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t batch, int64_t m,
                                int64_t k, int64_t n) {
  std::vector<double> c(static_cast<size_t>(batch * m * n), 0.0);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t q = 0; q < k; ++q) s += a[(p * m + i) * k + q] * b[(p * k + q) * n + j];
        c[(p * m + i) * n + j] = s;
      }
  return c;
}

// f32 GEMMs over k <= 64 of unit normals: error grows like sqrt(k) * 6e-8 per unit of result.
constexpr double kGemmF32Tol = 1e-5;

}  // namespace

TEST_P(ReduceMatmul, SumMeanMaxOverAxes) {
  Tensor a = iota({2, 3, 4});  // a[i,j,k] = 12 i + 4 j + k
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(sum(a), {276}, t));
  EXPECT_EQ(sum(a).dim(), 0);
  EXPECT_TRUE(all_close(sum(a, {0}), {12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34}, t));
  EXPECT_TRUE(all_close(sum(a, {1, 2}), {66, 210}, t));
  EXPECT_TRUE(all_close(sum(a, {-1}), {6, 22, 38, 54, 70, 86}, t));
  EXPECT_EQ(sum(a, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_TRUE(all_close(sum(a, {0, 2}), {60, 92, 124}, t));
  EXPECT_TRUE(all_close(mean(a, {2}), {1.5, 5.5, 9.5, 13.5, 17.5, 21.5}, t));
  EXPECT_TRUE(all_close(mean(a), {11.5}, t));
  EXPECT_TRUE(all_close(max(a, {1}), {8, 9, 10, 11, 20, 21, 22, 23}, t));
  EXPECT_TRUE(all_close(max(a), {23}, t));
  EXPECT_EQ(max(a, {0, 1}, true).shape(), (Shape{1, 1, 4}));
}

TEST_P(ReduceMatmul, ReductionsOfViews) {
  Tensor a = iota({4, 6});
  Tensor t = a.mT();               // [6, 4]
  Tensor s = a.slice(1, 1, 6, 2);  // [4, 3]: columns 1, 3, 5
  Tensor e = iota({3}).unsqueeze(0).expand({5, 3});
  const double tol = tol_for(dt());
  EXPECT_TRUE(all_close(sum(t, {1}), {36, 40, 44, 48, 52, 56}, tol));
  EXPECT_TRUE(all_close(sum(s, {0}), {40, 48, 56}, tol));
  EXPECT_TRUE(all_close(max(s, {1}), {5, 11, 17, 23}, tol));
  EXPECT_TRUE(all_close(sum(e, {0}), {0, 5, 10}, tol));
  EXPECT_TRUE(all_close(mean(e), {1}, tol));
}

TEST_P(ReduceMatmul, ArgmaxPicksFirstMaximum) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 5, 5, 2, 9, 0, 9, 3}, {2, 4}).to(dt());
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 1}));
  EXPECT_EQ(argmax(x, -1, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(argmax(x.mT(), 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(x, 1).dtype(), DType::I64);
}

TEST_P(ReduceMatmul, SumToUndoesBroadcasting) {
  Tensor g = iota({2, 3, 4});
  EXPECT_TRUE(all_close(sum_to(g, {4}), {60, 66, 72, 78}, tol_for(dt())));
  EXPECT_TRUE(all_close(sum_to(g, {3, 1}), {60, 92, 124}, tol_for(dt())));
  EXPECT_EQ(sum_to(g, {2, 1, 4}).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(sum_to(g, {2, 3, 4}).storage().get(), g.storage().get());
}

TEST_P(ReduceMatmul, Matmul2DHandWorked) {
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).to(dt());
  Tensor b = Tensor::from_vector(std::vector<double>{7, 8, 9, 10, 11, 12}, {3, 2}).to(dt());
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(matmul(a, b), {58, 64, 139, 154}, t));
  EXPECT_TRUE(all_close(matmul(b.mT(), a.mT()), {58, 139, 64, 154}, t));  // (ab)^T = b^T a^T
  EXPECT_TRUE(all_close(matmul(a, a.mT()), {14, 32, 32, 77}, t));
  EXPECT_TRUE(all_close(matmul(a.mT(), a), {17, 22, 27, 22, 29, 36, 27, 36, 45}, t));
}

TEST_P(ReduceMatmul, BatchedAndBroadcastMatchPlainLoop) {
  const int64_t B = 3, m = 5, k = 7, n = 4;
  Tensor a = randn({B, m, k}, 1, 0, dt()), b = randn({B, k, n}, 2, 0, dt());
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{B, m, n}));
  EXPECT_TRUE(all_close(c, host_matmul(a.to_vector<double>(), b.to_vector<double>(), B, m, k, n), kGemmF32Tol));
  // [B, m, k] x [k, n]: the weight broadcasts over the batch.
  Tensor w = randn({k, n}, 3, 0, dt());
  std::vector<double> wv = w.to_vector<double>(), wrep;
  for (int64_t p = 0; p < B; ++p) wrep.insert(wrep.end(), wv.begin(), wv.end());
  EXPECT_TRUE(all_close(matmul(a, w), host_matmul(a.to_vector<double>(), wrep, B, m, k, n), kGemmF32Tol));
  // [2, 1, m, k] x [3, k, n] -> [2, 3, m, n]
  Tensor a4 = randn({2, 1, m, k}, 4, 0, dt());
  Tensor c4 = matmul(a4, b);
  EXPECT_EQ(c4.shape(), (Shape{2, 3, m, n}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      auto want =
          host_matmul(a4.select(0, i).select(0, 0).to_vector<double>(), b.select(0, j).to_vector<double>(), 1, m, k, n);
      EXPECT_TRUE(all_close(c4.select(0, i).select(0, j), want, kGemmF32Tol));
    }
}

TEST_P(ReduceMatmul, NonContiguousOperandsOddSizes) {
  const int64_t m = 13, k = 9, n = 11;
  // a: transposed view; b: rows sliced with step 2 (lda = 2 n); batched a permuted.
  Tensor at = randn({k, m}, 5, 0, dt()), bs = randn({2 * k, n}, 6, 0, dt());
  Tensor a = at.mT(), b = bs.slice(0, 0, 2 * k, 2);
  std::vector<double> av = strided_values(a), bv = strided_values(b);
  EXPECT_TRUE(all_close(matmul(a, b), host_matmul(av, bv, 1, m, k, n), kGemmF32Tol));
  Tensor cols = randn({k, 3 * n}, 7, 0, dt()).slice(1, 0, 3 * n, 3);  // column stride 3: copied
  EXPECT_TRUE(all_close(matmul(a, cols), host_matmul(av, strided_values(cols), 1, m, k, n), kGemmF32Tol));
  Tensor p = randn({m, 2, k}, 8, 0, dt()).permute({1, 0, 2});  // [2, m, k], batch stride k
  Tensor q = randn({2, k, n}, 9, 0, dt());
  EXPECT_TRUE(all_close(matmul(p, q), host_matmul(strided_values(p), q.to_vector<double>(), 2, m, k, n), kGemmF32Tol));
  Tensor e = randn({k, n}, 10, 0, dt()).expand({4, k, n});  // batch stride 0
  Tensor ab = randn({4, m, k}, 11, 0, dt());
  std::vector<double> ev = strided_values(e);
  EXPECT_TRUE(all_close(matmul(ab, e), host_matmul(ab.to_vector<double>(), ev, 4, m, k, n), kGemmF32Tol));
}

TEST_P(ReduceMatmul, EmptyInnerDimensionGivesZeros) {
  Tensor a = Tensor::empty({3, 0}, dt()), b = Tensor::empty({0, 2}, dt());
  EXPECT_TRUE(all_close(matmul(a, b), {0, 0, 0, 0, 0, 0}, 0));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ReduceMatmul, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });
