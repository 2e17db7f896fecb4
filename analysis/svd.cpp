// svd(): input checks, output allocation and the call into the device's `svd` kernel slot.
#include "analysis/svd.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dispatch.h"
#include "core/ops.h"

namespace lowrank::analysis {

Svd svd(const Tensor& a) {
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
  Svd d{Tensor::empty({m, k}, a.dtype(), a.device()), Tensor::empty({k}, a.dtype(), a.device()),
        Tensor::empty({k, n}, a.dtype(), a.device())};
  kernel(a.device(), &Backend::svd, OpKind::Svd)(x, d.u, d.s, d.vt);
  return d;
}

Svd canonicalize_signs(const Svd& d) {
  LR_CHECK(d.u.defined() && d.vt.defined() && d.u.dim() == 2 && d.vt.dim() == 2 && d.u.size(1) == d.vt.size(0),
           "canonicalize_signs: u {} and vt {} are not the factors of one SVD", d.u.defined() ? d.u.shape() : Shape{},
           d.vt.defined() ? d.vt.shape() : Shape{});
  NoGradGuard no_grad;
  const int64_t m = d.u.size(0), k = d.u.size(1);
  const std::vector<double> u = d.u.to_vector<double>();
  std::vector<double> sign(static_cast<size_t>(k), 1.0);
  for (int64_t j = 0; j < k; ++j) {
    double best = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      double v = u[static_cast<size_t>(i * k + j)];
      if (std::abs(v) > std::abs(best)) best = v;
    }
    if (best < 0.0) sign[static_cast<size_t>(j)] = -1.0;
  }
  Tensor s = Tensor::from_vector(sign, {k}).to(d.u.dtype()).to(d.u.device());
  return Svd{mul(d.u, s), d.s, mul(d.vt, s.unsqueeze(1))};
}

}  // namespace lowrank::analysis
