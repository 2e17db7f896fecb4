// CPU thin SVD through LAPACKE gesdd (divide and conquer), f32 and f64. It is the oracle the
// cuSOLVER twin (kernels/cuda) is compared against, up to the signs of the singular vectors.
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>

#include "core/threads.h"
#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {
namespace {

lapack_int gesdd(lapack_int m, lapack_int n, float* a, lapack_int lda, float* s, float* u, lapack_int ldu, float* vt,
                 lapack_int ldvt) {
  return LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt);
}
lapack_int gesdd(lapack_int m, lapack_int n, double* a, lapack_int lda, double* s, double* u, lapack_int ldu,
                 double* vt, lapack_int ldvt) {
  return LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt);
}

template <class T>
void svd_typed(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt) {
  const int64_t m = a.size(0), n = a.size(1), k = std::min(m, n);
  // gesdd overwrites its input, and needs it dense: work on a contiguous copy.
  Tensor work = Tensor::empty(a.shape(), a.dtype(), Device::cpu());
  copy(a, work);
  // A row-major [m, n] buffer is the column-major [n, m] matrix Aᵀ = V S Uᵀ. Factoring Aᵀ in
  // column-major order writes V (col-major [n, k]) as the bytes of row-major Vt [k, n], and Uᵀ
  // (col-major [k, m]) as the bytes of row-major U [m, k], so LAPACKE never transposes a copy.
  // LAPACK gets OpenBLAS's own threads for the call; everything else keeps it single-threaded.
  openblas_set_num_threads(num_threads());
  lapack_int info =
      gesdd(static_cast<lapack_int>(n), static_cast<lapack_int>(m), work.data<T>(), static_cast<lapack_int>(n),
            s.data<T>(), vt.data<T>(), static_cast<lapack_int>(n), u.data<T>(), static_cast<lapack_int>(k));
  openblas_set_num_threads(1);
  LR_CHECK(info == 0, "svd: LAPACKE gesdd failed on {} {} (info {}{})", dtype_name(a.dtype()), a.shape(), info,
           info > 0 ? ", no convergence" : ", bad argument");
}

}  // namespace

void svd(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt) {
  if (a.dtype() == DType::F32)
    svd_typed<float>(a, u, s, vt);
  else
    svd_typed<double>(a, u, s, vt);
}

}  // namespace lowrank::cpu
