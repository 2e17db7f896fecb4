// Layer math as single autograd nodes, for the layers whose op-by-op composition would cost
// extra copies (see linear()).
#pragma once
#include "core/tensor.h"

namespace lowrank::nn {

// y = x W^T + b over the last axis of x: W [out, in], b [out] or undefined, x [..., in].
// One autograd node whose backward writes dW = g^T x straight into W's [out, in] layout; the
// composition matmul(x, W.mT()) + b would produce dW transposed and copy it back every step.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);

}  // namespace lowrank::nn
