// Layer math as single autograd nodes, for the layers whose op-by-op composition would cost
// extra copies (see linear()).
#pragma once
#include "core/tensor.h"

namespace lowrank::nn {

// y = x W^T + b over the last axis of x: W [out, in], b [out] or undefined, x [..., in]; with
// `relu`, y = relu(x W^T + b). One autograd node whose backward writes dW = g^T x straight into W's
// [out, in] layout; the composition matmul(x, W.mT()) + b would produce dW transposed and copy it
// back every step. The bias and the ReLU are applied in the product's own storage, and ReLU's
// gradient is taken inside the node: on the MLP's 32 x 128 layers the separate add and relu nodes
// (their allocations and dispatch) were ~11% of a 2-thread training step.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, bool relu = false);

}  // namespace lowrank::nn
