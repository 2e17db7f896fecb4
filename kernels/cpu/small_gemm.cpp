// Small-operand f32 GEMM with AVX-512 register tiles (kernels/cpu/small_gemm.h). Two forms:
//  - op(B) = B (row-major k x n): a tile of MR rows x NV 16-lane vectors of C stays in registers
//    while j runs over k: C[i, cols] += op(A)[i, j] · B[j, cols] (a broadcast and NV fused
//    multiply-adds per row). op(A) may be A or Aᵀ: only where the broadcast reads from changes.
//  - op(B) = Bᵀ (B row-major n x k), op(A) = A: C[i, j] is a dot product of two contiguous rows;
//    a tile of MR x NR dot products runs over k in 16-lane vectors (the last one masked) and each
//    is reduced across its lanes at the end.
// Each sum runs over j (or k's vectors) in ascending order, whatever the tile, so the result of an
// element depends only on its operands' values and k.
// GCC 12's AVX-512 intrinsics read _mm512_undefined_ps() and warn about it under -Werror
// (GCC bug 105593, fixed in later releases): for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/cpu/small_gemm.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "core/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define LR_SMALL_GEMM 1
#endif

namespace lowrank::cpu {

#if defined(LR_SMALL_GEMM)
namespace {

// Taken where it measured faster than single-threaded OpenBLAS 0.3.21 (one core, AVX-512,
// bench/core_bench BM_SmallGemmVsBlas): products of 2^20 to 2^22 multiply-adds whose m or k is at
// most 32 (the MLP's 784 -> 128 layer at a batch of 32 or its half: forward x·Wᵀ 0.70-0.88 of
// OpenBLAS's time, the weight gradient dYᵀ·x 0.93-0.97). Smaller products (the MLP's 128 -> 128
// layer: 1.07-1.26) and wider ones stay with OpenBLAS.
constexpr int64_t kSmallDim = 32;
constexpr int64_t kSmallMinMacs = int64_t{1} << 20;
constexpr int64_t kSmallMaxMacs = int64_t{1} << 22;

bool have_avx512() {
  return cpu_has_avx512f();
}

#define LR_AVX512 __attribute__((target("avx512f")))
// Tile loops unrolled before scalar replacement, so the accumulators live in registers.
#define LR_UNROLL _Pragma("GCC unroll 8")

LR_AVX512 inline __mmask16 lanes_mask(int64_t lanes) {
  return lanes >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << lanes) - 1u);
}

LR_AVX512 inline void store_out(float* c, __mmask16 mask, __m512 sum, float alpha, float beta) {
  __m512 out = _mm512_mul_ps(_mm512_set1_ps(alpha), sum);
  if (beta != 0.0f) out = _mm512_add_ps(out, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c)));
  _mm512_mask_storeu_ps(c, mask, out);
}

// Rows [i0, i0 + MR) x columns [n0, n0 + w) of C, w <= 16 * NV, op(B) = B.
template <int MR, int NV>
LR_AVX512 void axpy_tile(bool ta, int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                         float beta, float* c, int64_t ldc, int64_t i0, int64_t n0, int64_t w) {
  __mmask16 mask[NV];
  LR_UNROLL for (int v = 0; v < NV; ++v) mask[v] = lanes_mask(std::max<int64_t>(0, w - 16 * v));
  __m512 acc[MR][NV];
  LR_UNROLL for (int r = 0; r < MR; ++r) LR_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  // op(A)[i0 + r, j]: A[i0 + r, j] or A[j, i0 + r].
  const int64_t row_step = ta ? 1 : lda, col_step = ta ? lda : 1;
  const float* arow = a + i0 * row_step;
  const float* brow = b + n0;
  for (int64_t j = 0; j < k; ++j, arow += col_step, brow += ldb) {
    __m512 bv[NV];
    LR_UNROLL for (int v = 0; v < NV; ++v) bv[v] = _mm512_maskz_loadu_ps(mask[v], brow + 16 * v);
    LR_UNROLL for (int r = 0; r < MR; ++r) {
      const __m512 s = _mm512_set1_ps(arow[r * row_step]);
      LR_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(s, bv[v], acc[r][v]);
    }
  }
  LR_UNROLL for (int r = 0; r < MR; ++r) LR_UNROLL for (int v = 0; v < NV; ++v)
      store_out(c + (i0 + r) * ldc + n0 + 16 * v, mask[v], acc[r][v], alpha, beta);
}

// Rows [i0, i0 + MR) x columns [j0, j0 + NR) of C, op(A) = A, op(B) = Bᵀ.
template <int MR, int NR>
LR_AVX512 void dot_tile(int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                        float* c, int64_t ldc, int64_t i0, int64_t j0) {
  __m512 acc[MR][NR];
  LR_UNROLL for (int r = 0; r < MR; ++r) LR_UNROLL for (int q = 0; q < NR; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; kk += 16) {
    const __mmask16 mask = lanes_mask(k - kk);
    __m512 av[MR], bv[NR];
    LR_UNROLL for (int r = 0; r < MR; ++r) av[r] = _mm512_maskz_loadu_ps(mask, a + (i0 + r) * lda + kk);
    LR_UNROLL for (int q = 0; q < NR; ++q) bv[q] = _mm512_maskz_loadu_ps(mask, b + (j0 + q) * ldb + kk);
    LR_UNROLL for (int r = 0; r < MR; ++r) LR_UNROLL for (int q = 0; q < NR; ++q) acc[r][q] =
        _mm512_fmadd_ps(av[r], bv[q], acc[r][q]);
  }
  LR_UNROLL for (int r = 0; r < MR; ++r) LR_UNROLL for (int q = 0; q < NR; ++q) {
    float* out = c + (i0 + r) * ldc + j0 + q;
    const float sum = alpha * _mm512_reduce_add_ps(acc[r][q]);
    *out = beta != 0.0f ? sum + beta * *out : sum;
  }
}

// Calls f(std::integral_constant<int, R>{}) for the run-time count r in [1, N] (nothing for 0): the
// edge tiles' sizes become template arguments.
template <int N, class F>
void with_count(int64_t r, F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (void)((r == I + 1 ? (f(std::integral_constant<int, I + 1>{}), true) : false) || ...);
  }
  (std::make_integer_sequence<int, N>{});
}

// Tile sizes: MR x NV vectors of accumulators plus NV loads and a broadcast within 32 registers.
constexpr int kAxpyRows = 6, kAxpyVecs = 4, kDotRows = 4, kDotCols = 4;

template <int MR>
LR_AVX512 void axpy_rows(bool ta, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                         int64_t ldb, float beta, float* c, int64_t ldc, int64_t i0) {
  for (int64_t n0 = 0; n0 < n; n0 += 16 * kAxpyVecs) {
    const int64_t w = std::min<int64_t>(16 * kAxpyVecs, n - n0);
    with_count<kAxpyVecs>((w + 15) / 16, [&](auto nv) {
      axpy_tile<MR, decltype(nv)::value>(ta, k, alpha, a, lda, b, ldb, beta, c, ldc, i0, n0, w);
    });
  }
}

template <int MR>
LR_AVX512 void dot_rows(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                        float beta, float* c, int64_t ldc, int64_t i0) {
  int64_t j0 = 0;
  for (; j0 + kDotCols <= n; j0 += kDotCols) dot_tile<MR, kDotCols>(k, alpha, a, lda, b, ldb, beta, c, ldc, i0, j0);
  with_count<kDotCols - 1>(
      n - j0, [&](auto nr) { dot_tile<MR, decltype(nr)::value>(k, alpha, a, lda, b, ldb, beta, c, ldc, i0, j0); });
}

}  // namespace

bool small_gemm_available() {
  return have_avx512();
}

bool small_gemm_takes(bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  if (!have_avx512() || (ta && tb) || m <= 0 || n <= 0 || k <= 0) return false;
  const int64_t macs = m * n * k;
  if (macs < kSmallMinMacs || macs > kSmallMaxMacs) return false;
  return std::min(m, k) <= kSmallDim;
}

void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (!tb) {
    int64_t i0 = 0;
    for (; i0 + kAxpyRows <= m; i0 += kAxpyRows)
      axpy_rows<kAxpyRows>(ta, n, k, alpha, a, lda, b, ldb, beta, c, ldc, i0);
    with_count<kAxpyRows - 1>(
        m - i0, [&](auto mr) { axpy_rows<decltype(mr)::value>(ta, n, k, alpha, a, lda, b, ldb, beta, c, ldc, i0); });
    return;
  }
  int64_t i0 = 0;
  for (; i0 + kDotRows <= m; i0 += kDotRows) dot_rows<kDotRows>(n, k, alpha, a, lda, b, ldb, beta, c, ldc, i0);
  with_count<kDotRows - 1>(
      m - i0, [&](auto mr) { dot_rows<decltype(mr)::value>(n, k, alpha, a, lda, b, ldb, beta, c, ldc, i0); });
}

#else  // no x86-64: OpenBLAS takes every product

bool small_gemm_available() {
  return false;
}
bool small_gemm_takes(bool, bool, int64_t, int64_t, int64_t) {
  return false;
}
void small_gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                float*, int64_t) {}

#endif

}  // namespace lowrank::cpu
