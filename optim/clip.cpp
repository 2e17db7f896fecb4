// clip_grad_norm with framework ops (any device); per-tensor norms are summed in f64 on the host.
#include "optim/clip.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace lowrank::optim {
namespace {

// torch adds this to the norm before dividing, so a zero norm never divides by zero.
constexpr double kClipEpsilon = 1e-6;

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  LR_CHECK(std::isfinite(max_norm) && max_norm >= 0, "clip_grad_norm: max_norm must be finite and >= 0, got {}",
           max_norm);
  LR_CHECK(norm_type > 0, "clip_grad_norm: norm_type must be > 0 (or infinity), got {}", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    LR_CHECK(p.defined(), "clip_grad_norm: undefined parameter");
    Tensor g = p.grad();
    if (g.defined() && g.numel() > 0) grads.push_back(g);
  }
  double total = 0.0;
  const bool inf_norm = std::isinf(norm_type);
  for (const Tensor& g : grads) {
    LR_CHECK(g.dtype() == DType::F32 || g.dtype() == DType::F64, "clip_grad_norm: gradient {} {} is not f32/f64",
             dtype_name(g.dtype()), g.shape());
    if (inf_norm) {
      total = std::max(total, max(abs(g)).item());
    } else if (norm_type == 2.0) {
      total += sum(mul(g, g)).item();
    } else if (norm_type == 1.0) {
      total += sum(abs(g)).item();
    } else {
      total += sum(pow(abs(g), norm_type)).item();
    }
  }
  if (!inf_norm)
    total = norm_type == 2.0 ? std::sqrt(total) : (norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type));
  if (!std::isfinite(total)) return total;
  double coef = max_norm / (total + kClipEpsilon);
  if (coef < 1.0)
    for (Tensor& g : grads) g.copy_(mul(g, coef));
  return total;
}

double clip_grad_norm(const NamedParameters& params, double max_norm, double norm_type) {
  std::vector<Tensor> ps;
  ps.reserve(params.size());
  for (const auto& [name, p] : params) ps.push_back(p);
  return clip_grad_norm(ps, max_norm, norm_type);
}

}  // namespace lowrank::optim
