// The fused LoRA linear op (docs/design.md, idea 6): y = base_scale·x Wᵀ + b + scale·(x Aᵀ) Bᵀ as one
// autograd op whose backward kernel gives dx, dA, dB, and dW/db only when they are trainable.
#include "core/ops/op_util.h"

namespace lowrank {

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                   double base_scale) {
  const char* op = "lora_linear";
  detail::check_float(op, x);
  detail::check_same(op, x, w);
  detail::check_same(op, x, a);
  detail::check_same(op, x, bm);
  LR_CHECK(x.dim() >= 1, "{}: x must have at least one axis", op);
  LR_CHECK(w.dim() == 2, "{}: W must be [out, in], got {}", op, w.shape());
  LR_CHECK(a.dim() == 2 && bm.dim() == 2, "{}: A must be [r, in] and B [out, r], got A {} and B {}", op, a.shape(),
           bm.shape());
  const int64_t in = w.size(1), out_f = w.size(0), r = a.size(0);
  LR_CHECK(x.size(-1) == in, "{}: x {} does not match W {} (in = {})", op, x.shape(), w.shape(), in);
  LR_CHECK(r >= 1, "{}: rank must be at least 1, got A {}", op, a.shape());
  LR_CHECK(a.size(1) == in, "{}: A {} does not match W {}: A must be [r, in] = [{}, {}]", op, a.shape(), w.shape(), r,
           in);
  LR_CHECK(bm.size(0) == out_f && bm.size(1) == r, "{}: B {} must be [out, r] = [{}, {}] for W {} and A {}", op,
           bm.shape(), out_f, r, w.shape(), a.shape());
  if (b.defined()) {
    detail::check_same(op, x, b);
    LR_CHECK(b.dim() == 1 && b.size(0) == out_f, "{}: bias {} must be [{}]", op, b.shape(), out_f);
  }

  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  const int64_t m = x.numel() / std::max<int64_t>(in, 1);
  Tensor x2 = x.is_contiguous() ? x.detach().view({m, in}) : x.detach().contiguous().view({m, in});
  Tensor wc = w.is_contiguous() ? w : w.contiguous();
  Tensor ac = a.is_contiguous() ? a : a.contiguous();
  Tensor bc = bm.is_contiguous() ? bm : bm.contiguous();
  Tensor y = Tensor::empty({m, out_f}, x.dtype(), x.device());
  Tensor xa = Tensor::empty({m, r}, x.dtype(), x.device());
  Tensor biasc = b.defined() && !b.is_contiguous() ? b.contiguous() : b;
  kernel(x.device(), &Backend::lora_forward, OpKind::LoraLinear)(x2, wc, biasc, ac, bc, scale, base_scale, y, xa);
  Tensor out = Tensor::view_of(y.storage(), out_shape, contiguous_strides(out_shape), 0, y.dtype());

  if (needs_grad(x, w, b, a, bm)) {
    const bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    const bool na = a.requires_grad(), nbm = bm.requires_grad();
    Shape x_shape = x.shape();
    Tensor wd = wc.detach(), ad = ac.detach(), bd = bc.detach();
    record(OpKind::LoraLinear, out, {x, w, b, a, bm}, [=](const Tensor& g) {
      Tensor gy = g.is_contiguous() ? g.view({m, out_f}) : g.contiguous().view({m, out_f});
      Device d = gy.device();
      DType t = gy.dtype();
      Tensor gx = nx ? Tensor::empty({m, in}, t, d) : Tensor();
      Tensor gw = nw ? Tensor::empty({out_f, in}, t, d) : Tensor();
      Tensor gb = nb ? Tensor::empty({out_f}, t, d) : Tensor();
      Tensor ga = na ? Tensor::empty({r, in}, t, d) : Tensor();
      Tensor gbm = nbm ? Tensor::empty({out_f, r}, t, d) : Tensor();
      kernel(d, &Backend::lora_backward, OpKind::LoraLinear)(x2, wd, ad, bd, xa, gy, scale, base_scale, gx, gw, gb, ga,
                                                             gbm);
      return std::vector<Tensor>{nx ? gx.view(x_shape) : Tensor(), gw, gb, ga, gbm};
    });
  }
  return out;
}

}  // namespace lowrank
