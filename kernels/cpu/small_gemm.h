// f32 GEMM for products whose m or k is a few rows (a batch split over threads: 16 rows of the
// MLP), written with AVX-512 register tiles and no packing. OpenBLAS copies both operands into
// packed panels on every call; with 16 rows against a 784 x 128 weight the copy of the weight
// costs as much as the arithmetic (measured: 60-72 GFLOP/s at 16 rows, 78-113 at 32, on a core
// whose peak is ~115). These kernels read the operands where they lie.
#pragma once
#include <cstdint>

namespace lowrank::cpu {

// Whether this CPU runs small_gemm at all (AVX-512F).
bool small_gemm_available();

// Whether small_gemm takes this product (the CPU has AVX-512, the shape is one it is faster on).
bool small_gemm_takes(bool ta, bool tb, int64_t m, int64_t n, int64_t k);

// C[m,n] = alpha·op(A)·op(B) + beta·C, row-major with leading dimensions ld*, for any (ta, tb)
// but both transposed, on a CPU with AVX-512 (the caller asks small_gemm_takes first). beta == 0
// does not read C. Each element of C is one sum over k in a fixed order: results depend only on
// the shape and the operands' values (and, for the dot-product form, op(B) transposed, on k's
// split into 16-lane vectors), not on the caller or the thread.
void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace lowrank::cpu
