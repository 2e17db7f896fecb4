// CPU GEMM through OpenBLAS (row-major cblas; batches loop over the strided operands).
#include <cblas.h>

#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  const auto ta = g.trans_a ? CblasTrans : CblasNoTrans, tb = g.trans_b ? CblasTrans : CblasNoTrans;
  const auto m = static_cast<blasint>(g.m), n = static_cast<blasint>(g.n), k = static_cast<blasint>(g.k);
  const auto lda = static_cast<blasint>(g.lda), ldb = static_cast<blasint>(g.ldb), ldc = static_cast<blasint>(g.ldc);
  if (c.dtype() == DType::F32) {
    const float* pa = static_cast<const float*>(a.raw_data());
    const float* pb = static_cast<const float*>(b.raw_data());
    float* pc = static_cast<float*>(c.raw_data());
    for (int64_t i = 0; i < g.batch; ++i)
      cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(g.alpha), pa + i * g.stride_a, lda,
                  pb + i * g.stride_b, ldb, static_cast<float>(g.beta), pc + i * g.stride_c, ldc);
  } else {
    const double* pa = static_cast<const double*>(a.raw_data());
    const double* pb = static_cast<const double*>(b.raw_data());
    double* pc = static_cast<double*>(c.raw_data());
    for (int64_t i = 0; i < g.batch; ++i)
      cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, g.alpha, pa + i * g.stride_a, lda, pb + i * g.stride_b, ldb, g.beta,
                  pc + i * g.stride_c, ldc);
  }
}

}  // namespace lowrank::cpu
