// Linear algebra ops without autograd: the thin SVD behind PiSSA initialisation and the
// subspace analysis (the device's `svd` kernel slot: LAPACKE on CPU, cuSOLVER on CUDA).
#include <limits>

#include "core/ops/op_util.h"

namespace lowrank {

SvdResult svd(const Tensor& a) {
  LR_CHECK(a.defined(), "svd: undefined input");
  LR_CHECK(a.dim() == 2, "svd: needs a 2-D matrix, got shape {}", a.shape());
  LR_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::F64, "svd: needs f32 or f64, got {} {}",
           dtype_name(a.dtype()), a.shape());
  LR_CHECK(a.numel() > 0, "svd: empty matrix {}", a.shape());
  NoGradGuard no_grad;
  const Tensor x = a.detach();
  // NaN < inf and inf < inf are both false, so one comparison finds every non-finite entry, on
  // whichever device `a` lives (LAPACK would otherwise loop or return garbage).
  Tensor finite = lt(abs(x), Tensor::scalar(std::numeric_limits<double>::infinity(), x.dtype(), x.device()));
  LR_CHECK(max(rsub(1.0, finite)).item() == 0.0, "svd: the {} {} matrix holds NaN or Inf", dtype_name(a.dtype()),
           a.shape());
  const int64_t m = a.size(0), n = a.size(1), k = std::min(m, n);
  SvdResult d{Tensor::empty({m, k}, a.dtype(), a.device()), Tensor::empty({k}, a.dtype(), a.device()),
              Tensor::empty({k, n}, a.dtype(), a.device())};
  kernel(a.device(), &Backend::svd, OpKind::Svd)(x, d.u, d.s, d.vt);
  return d;
}

}  // namespace lowrank
