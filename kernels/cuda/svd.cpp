// CUDA thin SVD through cuSOLVER gesvd, f32 and f64. gesvd wants a column-major matrix with at
// least as many rows as columns. A wide row-major a [m, n] (m <= n) is exactly the column-major
// aᵀ [n, m] = V S Uᵀ, whose factors land directly in our row-major vt and u; a tall one is copied
// to column-major first and its factors transposed on the way out. CPU twin: kernels/cpu/svd.cpp.
#include <algorithm>
#include <climits>

#include "core/cuda/cuda_context.h"
#include "core/cuda/cuda_libs.h"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

cusolverStatus_t gesvd_buffer_size(cusolverDnHandle_t h, int m, int n, float*, int* lwork) {
  return cusolver_api().sgesvd_buffer_size(h, m, n, lwork);
}
cusolverStatus_t gesvd_buffer_size(cusolverDnHandle_t h, int m, int n, double*, int* lwork) {
  return cusolver_api().dgesvd_buffer_size(h, m, n, lwork);
}
cusolverStatus_t gesvd(cusolverDnHandle_t h, int m, int n, float* a, int lda, float* s, float* u, int ldu, float* vt,
                       int ldvt, float* work, int lwork, float* rwork, int* info) {
  return cusolver_api().sgesvd(h, 'S', 'S', m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, rwork, info);
}
cusolverStatus_t gesvd(cusolverDnHandle_t h, int m, int n, double* a, int lda, double* s, double* u, int ldu,
                       double* vt, int ldvt, double* work, int lwork, double* rwork, int* info) {
  return cusolver_api().dgesvd(h, 'S', 'S', m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, rwork, info);
}

template <class T>
void svd_typed(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt) {
  const int64_t m = a.size(0), n = a.size(1), k = std::min(m, n);
  LR_CHECK(m <= INT_MAX && n <= INT_MAX, "svd: {} exceeds cuSOLVER's 32-bit sizes", a.shape());
  const Device d = a.device();
  cusolverDnHandle_t h = cusolver(d.index);
  cudaStream_t st = stream(d);
  const bool wide = m <= n;
  // Column-major input of gesvd: rows >= cols.
  const int rows = static_cast<int>(wide ? n : m), cols = static_cast<int>(wide ? m : n);
  Tensor work_a = Tensor::empty({cols, rows}, a.dtype(), d);  // row-major [cols, rows] = column-major [rows, cols]
  copy(wide ? a : a.mT(), work_a);
  // Column-major factors: U [rows, cols], VT [cols, cols].
  Tensor uf, vtf;
  if (wide) {  // aᵀ = V S Uᵀ: gesvd's U is our vt, its VT our u (byte for byte)
    uf = vt;
    vtf = u;
  } else {
    uf = Tensor::empty({cols, rows}, a.dtype(), d);
    vtf = Tensor::empty({cols, cols}, a.dtype(), d);
  }
  int lwork = 0;
  CUSOLVER_CHECK(gesvd_buffer_size(h, rows, cols, static_cast<T*>(nullptr), &lwork));
  Tensor work = Tensor::empty({std::max(lwork, 1)}, a.dtype(), d);
  Tensor rwork = Tensor::empty({std::max<int64_t>(k, 2)}, a.dtype(), d);
  Tensor info = Tensor::empty({1}, DType::I32, d);
  CUSOLVER_CHECK(gesvd(h, rows, cols, static_cast<T*>(work_a.raw_data()), rows, static_cast<T*>(s.raw_data()),
                       static_cast<T*>(uf.raw_data()), rows, static_cast<T*>(vtf.raw_data()), cols,
                       static_cast<T*>(work.raw_data()), lwork, static_cast<T*>(rwork.raw_data()),
                       static_cast<int*>(info.raw_data())));
  int host_info = 0;
  CUDA_CHECK(cudaMemcpyAsync(&host_info, info.raw_data(), sizeof(int), cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaStreamSynchronize(st));
  LR_CHECK(host_info == 0, "svd: cuSOLVER gesvd failed on {} {} (info {}{})", dtype_name(a.dtype()), a.shape(),
           host_info, host_info > 0 ? ", no convergence" : ", bad argument");
  if (!wide) {
    // Column-major U [m, k] is row-major [k, m]: its transpose view is our u; likewise vt.
    copy(Tensor::view_of(uf.storage(), {m, k}, {1, m}, uf.offset(), uf.dtype()), u);
    copy(Tensor::view_of(vtf.storage(), {k, n}, {1, k}, vtf.offset(), vtf.dtype()), vt);
  }
}

}  // namespace

void svd(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt) {
  if (a.dtype() == DType::F32)
    svd_typed<float>(a, u, s, vt);
  else
    svd_typed<double>(a, u, s, vt);
}

}  // namespace lowrank::cuda
