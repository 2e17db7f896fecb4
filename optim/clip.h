// Global gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.
#pragma once
#include <limits>
#include <vector>

#include "core/tensor.h"
#include "optim/optimizer.h"

namespace lowrank::optim {

inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();

// The norm of all gradients taken together, (sum_p ||g_p||^q)^(1/q) (max |g| for q = infinity),
// over the parameters that have a gradient. When it exceeds max_norm, every gradient is scaled by
// max_norm / (norm + 1e-6), as torch does. Returns the norm before clipping. A non-finite norm
// leaves the gradients untouched (torch would scale them by NaN) so the caller can skip the step.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);
double clip_grad_norm(const NamedParameters& params, double max_norm, double norm_type = 2.0);

}  // namespace lowrank::optim
