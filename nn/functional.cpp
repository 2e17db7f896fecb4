// linear(): the Dense layer's math (and its ReLU) as one autograd node.
#include "nn/functional.h"

#include "core/autograd.h"
#include "core/ops.h"

namespace lowrank::nn {

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, bool relu) {
  LR_CHECK(x.defined() && w.defined(), "linear: undefined input");
  LR_CHECK(w.dim() == 2, "linear: W must be [out, in], got {}", w.shape());
  const int64_t out = w.size(0), in = w.size(1);
  LR_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear: x {} does not end in W's in = {} (W {})", x.shape(), in,
           w.shape());
  if (b.defined())
    LR_CHECK(b.dim() == 1 && b.size(0) == out, "linear: bias {} must be [{}] for W {}", b.shape(), out, w.shape());
  const bool vec = x.dim() == 1;
  Tensor y;
  {
    NoGradGuard no_grad;
    y = matmul(vec ? x.unsqueeze(0) : x, w.mT());  // a fresh tensor: bias and ReLU go in place
    if (b.defined() || relu) add_bias_relu_(y, b, relu);
    if (vec) y = y.squeeze(0);
  }
  if (needs_grad(x, w, b)) {
    const bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    Tensor xd = x.detach(), wd = w.detach();
    Tensor yd = relu ? y.detach() : Tensor();  // its output gives ReLU's mask (detached: no cycle)
    record(OpKind::Matmul, y, {x, w, b}, [xd, wd, yd, nx, nw, nb, in, out](const Tensor& g_out) {
      Tensor g = yd.defined() ? relu_backward(yd, g_out) : g_out;
      Tensor g2 = g.reshape({-1, out});
      Tensor gx, gw, gb;
      if (nx) gx = matmul(g2, wd).reshape(xd.shape());
      if (nw) gw = matmul(g2.mT(), xd.reshape({-1, in}));
      if (nb) gb = sum(g2, {0});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace lowrank::nn
