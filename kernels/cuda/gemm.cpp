// CUDA GEMM through cuBLAS: the row-major arguments of core/dispatch.h become the column-major
// call C^T = op(B)^T op(A)^T, so no operand is ever copied. Default FP32 math (no TF32).
// CPU twin: kernels/cpu/gemm.cpp.
#include <climits>

#include "core/cuda/cuda_context.h"
#include "core/cuda/cuda_libs.h"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

int to_int(int64_t v, const char* what, const GemmArgs& g) {
  LR_CHECK(v >= 0 && v <= INT_MAX, "matmul: {} = {} exceeds cuBLAS's 32-bit limit (m {}, n {}, k {}, batch {})", what,
           v, g.m, g.n, g.k, g.batch);
  return static_cast<int>(v);
}

}  // namespace

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  cublasHandle_t h = cublas(c.device().index);
  const CublasApi& api = cublas_api();
  const int m = to_int(g.m, "m", g), n = to_int(g.n, "n", g), k = to_int(g.k, "k", g);
  const int lda = to_int(g.lda, "lda", g), ldb = to_int(g.ldb, "ldb", g), ldc = to_int(g.ldc, "ldc", g);
  const int batch = to_int(g.batch, "batch", g);
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major C^T [n, m] = op(B)^T [n, k] · op(A)^T [k, m]: B's buffer goes first.
  if (c.dtype() == DType::F32) {
    const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
    const float* pa = static_cast<const float*>(a.raw_data());
    const float* pb = static_cast<const float*>(b.raw_data());
    float* pc = static_cast<float*>(c.raw_data());
    if (batch == 1)
      CUBLAS_CHECK(api.sgemm(h, op_b, op_a, n, m, k, &alpha, pb, ldb, pa, lda, &beta, pc, ldc));
    else
      CUBLAS_CHECK(api.sgemm_strided_batched(h, op_b, op_a, n, m, k, &alpha, pb, ldb, g.stride_b, pa, lda, g.stride_a,
                                             &beta, pc, ldc, g.stride_c, batch));
  } else if (c.dtype() == DType::F64) {
    const double alpha = g.alpha, beta = g.beta;
    const double* pa = static_cast<const double*>(a.raw_data());
    const double* pb = static_cast<const double*>(b.raw_data());
    double* pc = static_cast<double*>(c.raw_data());
    if (batch == 1)
      CUBLAS_CHECK(api.dgemm(h, op_b, op_a, n, m, k, &alpha, pb, ldb, pa, lda, &beta, pc, ldc));
    else
      CUBLAS_CHECK(api.dgemm_strided_batched(h, op_b, op_a, n, m, k, &alpha, pb, ldb, g.stride_b, pa, lda, g.stride_a,
                                             &beta, pc, ldc, g.stride_c, batch));
  } else {
    LR_FAIL("matmul: CUDA GEMM needs f32 or f64, got {}", dtype_name(c.dtype()));
  }
}

}  // namespace lowrank::cuda
