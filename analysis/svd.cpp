// The sign convention for singular vectors and the truncated SVD (svd() itself is core/ops/linalg.cpp).
#include "analysis/svd.h"

#include <algorithm>
#include <cmath>

#include "core/ops.h"

namespace lowrank::analysis {

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

Tensor TruncatedSvd::reconstruction() const {
  LR_CHECK(a.defined() && b.defined(), "TruncatedSvd::reconstruction: empty factors");
  NoGradGuard no_grad;
  return matmul(b, a);
}

TruncatedSvd truncated_svd(const Tensor& m, int64_t r) {
  LR_CHECK(m.defined() && m.dim() == 2, "truncated_svd: needs a 2-D matrix, got {}", m.defined() ? m.shape() : Shape{});
  LR_CHECK(r >= 1 && r <= std::min(m.size(0), m.size(1)), "truncated_svd: rank {} outside 1..min({}, {}) for {}", r,
           m.size(0), m.size(1), m.shape());
  NoGradGuard no_grad;
  const Svd d = svd(m);  // checks dtype, emptiness and finiteness
  return TruncatedSvd{d.vt.narrow(0, 0, r).contiguous(), mul(d.u.narrow(1, 0, r), d.s.narrow(0, 0, r)).contiguous()};
}

}  // namespace lowrank::analysis
