// Row-major OpenBLAS GEMM for contiguous or row-strided operands, in f32 and f64: the one
// wrapper the fused CPU kernels (LoRA matmul, attention) call.
#pragma once
#include <cblas.h>

#include <cstdint>

namespace lowrank::cpu {

// C[m,n] = alpha·op(A)·op(B) + beta·C, every matrix row-major with leading dimension ld*.
inline void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
                    const float* b, int64_t ldb, double beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), static_cast<float>(alpha), a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), static_cast<float>(beta), c, static_cast<blasint>(ldc));
}
inline void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                    const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

}  // namespace lowrank::cpu
