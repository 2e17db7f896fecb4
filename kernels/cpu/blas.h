// Row-major GEMM for contiguous or row-strided operands, in f32 and f64: the one wrapper the CPU
// kernels (GEMM, LoRA matmul, attention) call. OpenBLAS runs single-threaded; a large product is
// split over the CPU pool (kernels/cpu/parallel.h) by rows or columns of C.
#pragma once
#include <cstdint>

namespace lowrank::cpu {

// C[m,n] = alpha·op(A)·op(B) + beta·C, every matrix row-major with leading dimension ld*.
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, double beta, float* c, int64_t ldc);
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
             const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace lowrank::cpu
