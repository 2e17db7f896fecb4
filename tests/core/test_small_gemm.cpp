// kernels/cpu/small_gemm: every form (A or Aᵀ times B, A times Bᵀ) against an f64 reference on
// shapes with ragged row, column and k tails, strided operands, alpha and beta; beta = 0 never
// reads C; and the products it takes (the MLP's 784 -> 128 layer) give the same bits split over
// 1, 2 or 3 threads as in one call.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "core/threads.h"
#include "kernels/cpu/small_gemm.h"

using namespace lowrank;

namespace {

struct ThreadsGuard {
  ~ThreadsGuard() { set_num_threads(0); }
};

std::vector<float> values(int64_t n, uint64_t seed) {
  return randn({n}, seed).to_vector<float>();
}

}  // namespace

TEST(SmallGemm, EveryFormMatchesAnF64Reference) {
  if (!cpu::small_gemm_available()) GTEST_SKIP() << "this CPU has no AVX-512F: OpenBLAS takes every product";
  const int64_t ms[] = {1, 5, 6, 7, 13, 32}, ns[] = {1, 10, 16, 17, 64, 65, 130}, ks[] = {1, 10, 16, 17, 33, 200};
  uint64_t seed = 1;
  int checked = 0;
  for (int form = 0; form < 3; ++form) {
    const bool ta = form == 1, tb = form == 2;
    for (int64_t m : ms)
      for (int64_t n : ns)
        for (int64_t k : ks) {
          // Leading dimensions with padding, so a kernel that assumes packed rows fails.
          const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
          const std::vector<float> a = values((ta ? k : m) * lda, seed++), b = values((tb ? n : k) * ldb, seed++);
          const std::vector<float> c0 = values(m * ldc, seed++);
          for (const auto& [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-0.5f, 0.75f}}) {
            std::vector<float> c = c0;
            if (beta == 0.0f)
              for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
            cpu::small_gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                double want = 0, scale = 0;
                for (int64_t p = 0; p < k; ++p) {
                  const double x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j];
                  want += x * y;
                  scale += std::abs(x * y);
                }
                want = alpha * want + (beta == 0.0f ? 0.0 : beta * static_cast<double>(c0[i * ldc + j]));
                ASSERT_NEAR(c[i * ldc + j], want, 1e-5 * (scale + std::abs(want)) + 1e-6)
                    << "ta " << ta << " tb " << tb << " m " << m << " n " << n << " k " << k << " at (" << i << ", "
                    << j << ") alpha " << alpha << " beta " << beta;
              }
            // The padding of C is left alone.
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "padding written";
            ++checked;
          }
        }
  }
  EXPECT_EQ(checked, 3 * 6 * 7 * 6 * 2);
}

TEST(SmallGemm, TheProductsItTakesGiveTheSameBitsOnAnyThreadCount) {
  ThreadsGuard guard;
  // The MLP's first layer at a batch of 32: forward x·Wᵀ and the kernel's gradient dYᵀ·x.
  const Tensor x = randn({32, 784}, 3), w = randn({128, 784}, 4), dy = randn({32, 128}, 5);
  EXPECT_EQ(cpu::small_gemm_takes(false, true, 32, 128, 784), cpu::small_gemm_available());
  EXPECT_EQ(cpu::small_gemm_takes(true, false, 128, 784, 32), cpu::small_gemm_available());
  EXPECT_FALSE(cpu::small_gemm_takes(false, true, 32, 128, 128)) << "the 128 -> 128 layer is OpenBLAS's";
  EXPECT_FALSE(cpu::small_gemm_takes(true, true, 32, 128, 784)) << "both transposed is OpenBLAS's";
  auto run = [&](int threads) {
    set_num_threads(threads);
    return std::vector<std::vector<float>>{matmul(x, w.mT()).to_vector<float>(), matmul(dy.mT(), x).to_vector<float>()};
  };
  const auto one = run(1);
  for (int threads : {2, 3}) {
    const auto many = run(threads);
    for (size_t i = 0; i < one.size(); ++i)
      EXPECT_EQ(many[i], one[i]) << "product " << i << ", " << threads << " threads";
  }
  // And the values are the product's (to f32 rounding).
  const std::vector<double> xd = x.to(DType::F64).to_vector<double>(), wd = w.to(DType::F64).to_vector<double>();
  for (int64_t i : {0, 17, 31})
    for (int64_t j : {0, 63, 64, 127}) {
      double want = 0;
      for (int64_t p = 0; p < 784; ++p) want += xd[i * 784 + p] * wd[j * 784 + p];
      EXPECT_NEAR(one[0][i * 128 + j], want, 1e-3) << i << ", " << j;
    }
}
