// adam_step_: checks a parameter, its gradient and moment buffers once, then calls the fused
// Adam kernel slot of their device.
#include <cmath>

#include "core/dispatch.h"
#include "core/ops.h"

namespace lowrank {

void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamArgs& a) {
  LR_CHECK(param.defined() && grad.defined() && m.defined() && v.defined(), "adam_step: undefined tensor");
  LR_CHECK(param.dtype() == DType::F32 || param.dtype() == DType::F64, "adam_step: needs f32 or f64, got {} {}",
           dtype_name(param.dtype()), param.shape());
  for (const Tensor* t : {&grad, &m, &v}) {
    LR_CHECK(t->shape() == param.shape() && t->dtype() == param.dtype(),
             "adam_step: param is {} {} but grad/state is {} {}", dtype_name(param.dtype()), param.shape(),
             dtype_name(t->dtype()), t->shape());
    LR_CHECK(t->device() == param.device(), "adam_step: param {} is on {} but grad/state is on {}", param.shape(),
             param.device().str(), t->device().str());
  }
  LR_CHECK(param.is_contiguous() && m.is_contiguous() && v.is_contiguous(),
           "adam_step: param and moments of shape {} must be contiguous", param.shape());
  LR_CHECK(a.step >= 1, "adam_step: step must be >= 1 (it is 1-based), got {}", a.step);
  LR_CHECK(std::isfinite(a.lr) && a.lr >= 0, "adam_step: invalid learning rate {}", a.lr);
  LR_CHECK(a.beta1 >= 0 && a.beta1 < 1 && a.beta2 >= 0 && a.beta2 < 1, "adam_step: betas ({}, {}) must be in [0, 1)",
           a.beta1, a.beta2);
  LR_CHECK(a.eps >= 0 && a.weight_decay >= 0, "adam_step: eps {} and weight_decay {} must be >= 0", a.eps,
           a.weight_decay);
  if (param.numel() == 0) return;
  Tensor g = grad.is_contiguous() ? grad : grad.detach().contiguous();
  kernel(param.device(), &Backend::adam_step, OpKind::AdamStep)(a, param, g, m, v);
}

}  // namespace lowrank
