// CPU GEMM: single-threaded OpenBLAS calls (or, for a few shapes, kernels/cpu/small_gemm.h), split
// over the CPU pool when the product is large (by rows of C or by its columns; by batch for many
// small products). Each element of C is computed by one kernel call over the whole K, with the
// kernel chosen for the whole product, so the split changes no sum's order within a call, and the
// split itself depends only on the shape and the thread count.
#include <cblas.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/small_gemm.h"

namespace lowrank::cpu {
namespace {

// A product is split over the pool from kGemmParallelMinMacs multiply-adds, or from
// kGemmStreamMinMacs when one operand has kGemmStreamMinElems elements (4 MiB of f32, more than a
// core's L2): each thread then streams its own half of that operand from memory, the one-token
// products of generation. Smaller work stays on the calling thread: waking a worker costs
// microseconds. With one threshold of 2^22, GPT-2 124M's generation (1 x 768 x 2304 and
// 1 x 768 x 3072 products) lost its 2-thread speedup.
//
// Products from kGemmCacheMinMacs up to 2^22 (the MLP's 3.2M and 0.5M multiply-adds a batch of
// 32) are split too, but along the operand that is largest, so that each thread's half of it is a
// contiguous block, the same block every step: a Dense kernel [out, in] splits by its rows in the
// forward product (columns of C) and its gradient by rows of C, the halves Adam's split updates
// (kernels/cpu/adam.cpp), so each core keeps its half of the weights, gradients and moments in
// its own cache. Split by the longer side of C instead, the MLP's weights crossed between the
// cores every step and its epoch ran 1.06-1.10x slower on 2 threads than on 1; split this way,
// with Adam split alike, 2 threads take 0.66-0.74 of 1 thread's time (bench/mlp_bench
// BM_EpochThreadsPaired, idle machine).
constexpr int64_t kGemmParallelMinMacs = int64_t{1} << 22;
constexpr int64_t kGemmCacheMinMacs = int64_t{1} << 19;
constexpr int64_t kGemmStreamMinMacs = int64_t{1} << 20;
constexpr int64_t kGemmStreamMinElems = int64_t{1} << 20;
// Many products, each too small to split, run one per thread from this many multiply-adds in all.
constexpr int64_t kGemmBatchParallelMinMacs = int64_t{1} << 20;
// Rows or columns per split unit: a multiple of OpenBLAS's register tiles, so no chunk ends in a
// ragged tile that the unsplit call would not have had.
constexpr int64_t kGemmSplitUnit = 32;

void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), static_cast<float>(alpha), a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), static_cast<float>(beta), c, static_cast<blasint>(ldc));
}
void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

// One call over the whole K: small_gemm when it takes the whole product (`small`), else OpenBLAS.
template <class T>
void gemm_call(bool small, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T* a, int64_t lda,
               const T* b, int64_t ldb, double beta, T* c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>)
    if (small)
      return small_gemm(ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta), c, ldc);
  blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
void gemm_split(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T* a, int64_t lda, const T* b,
                int64_t ldb, double beta, T* c, int64_t ldc) {
  const bool small = std::is_same_v<T, float> && small_gemm_takes(ta, tb, m, n, k);
  const int64_t macs = m * n * k, size_a = m * k, size_b = k * n;
  const bool cache_split = macs >= kGemmCacheMinMacs && macs < kGemmParallelMinMacs;
  const bool par = (macs >= kGemmParallelMinMacs || cache_split ||
                    (macs >= kGemmStreamMinMacs && std::max(size_a, size_b) >= kGemmStreamMinElems)) &&
                   std::max(m, n) >= 2 * kGemmSplitUnit;
  if (!par || parallel_threads() <= 1) return gemm_call(small, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  // Rows of C split op(A) by rows and columns split op(B) by columns. For a cache split, the
  // largest of A, B and C decides (contiguous halves of it); otherwise the longer side of C.
  const bool by_rows = cache_split ? !(size_b > size_a && size_b > m * n) : m >= n;
  if (by_rows) {  // rows of C: rows of op(A)
    parallel_chunks((m + kGemmSplitUnit - 1) / kGemmSplitUnit, true, [&](int64_t u0, int64_t u1, int) {
      const int64_t r0 = u0 * kGemmSplitUnit, r1 = std::min(m, u1 * kGemmSplitUnit);
      gemm_call(small, ta, tb, r1 - r0, n, k, alpha, ta ? a + r0 : a + r0 * lda, lda, b, ldb, beta, c + r0 * ldc, ldc);
    });
  } else {  // columns of C: columns of op(B)
    parallel_chunks((n + kGemmSplitUnit - 1) / kGemmSplitUnit, true, [&](int64_t u0, int64_t u1, int) {
      const int64_t c0 = u0 * kGemmSplitUnit, c1 = std::min(n, u1 * kGemmSplitUnit);
      gemm_call(small, ta, tb, m, c1 - c0, k, alpha, a, lda, tb ? b + c0 * ldb : b + c0, ldb, beta, c + c0, ldc);
    });
  }
}

template <class T>
void gemm_typed(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  T* pc = static_cast<T*>(c.raw_data());
  auto one = [&](int64_t i) {
    gemm_rm(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, pa + i * g.stride_a, g.lda, pb + i * g.stride_b, g.ldb,
            g.beta, pc + i * g.stride_c, g.ldc);
  };
  // Many products, each too small to split: one thread per run of products.
  const bool per_batch = g.batch >= 2 * parallel_threads() && g.m * g.n * g.k < kGemmParallelMinMacs &&
                         g.batch * g.m * g.n * g.k >= kGemmBatchParallelMinMacs;
  if (per_batch && g.stride_c != 0) {
    parallel_for(g.batch, true, one);
  } else {
    for (int64_t i = 0; i < g.batch; ++i) one(i);
  }
}

}  // namespace

void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  gemm_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
             const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  if (c.dtype() == DType::F32)
    gemm_typed<float>(g, a, b, c);
  else
    gemm_typed<double>(g, a, b, c);
}

}  // namespace lowrank::cpu
