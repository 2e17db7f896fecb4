// Elementwise ops with NumPy broadcasting; backward formulas written with ops.
#include "core/ops/op_util.h"

namespace lowrank {
namespace detail {

Tensor broadcast_view(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  size_t lead = shape.size() - t.shape().size();
  Strides st(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i) st[i] = t.shape()[i - lead] == shape[i] ? t.strides()[i - lead] : 0;
  return Tensor::view_of(t.storage(), shape, st, t.offset(), t.dtype());
}

}  // namespace detail

namespace {
using detail::broadcast_view;
using detail::check_same;
using Grads = std::vector<Tensor>;

Tensor binary(BinaryOp op, OpKind kind, const char* name, const Tensor& a, const Tensor& b, double alpha = 0) {
  check_same(name, a, b);
  if (a.shape() == b.shape()) {  // the common case: no broadcast views to build
    Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
    if (out.numel() > 0) kernel(a.device(), &Backend::binary, kind)(op, a, b, out, alpha);
    return out;
  }
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  if (out.numel() > 0)
    kernel(a.device(), &Backend::binary, kind)(op, broadcast_view(a, s), broadcast_view(b, s), out, alpha);
  return out;
}

Tensor unary(UnaryOp op, OpKind kind, const Tensor& x, double alpha = 0) {
  LR_CHECK(x.defined(), "{}: undefined input", op_name(kind));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) kernel(x.device(), &Backend::unary, kind)(op, x, out, alpha);
  return out;
}

}  // namespace

// Backward lambdas capture inputs as they are, not detach()ed: the node already holds every input
// that needs grad, so no lifetime changes, and a detached handle would cost an allocation.
// Gradients of broadcast inputs are summed to the input's shape by backward() (autograd.cpp).

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary(BinaryOp::Add, OpKind::Add, "add", a, b);
  if (needs_grad(a, b)) record(OpKind::Add, out, {a, b}, [](const Tensor& g) { return Grads{g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary(BinaryOp::Sub, OpKind::Sub, "sub", a, b);
  if (needs_grad(a, b)) {
    const bool need_b = b.requires_grad();
    record(OpKind::Sub, out, {a, b}, [need_b](const Tensor& g) { return Grads{g, need_b ? neg(g) : Tensor()}; });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary(BinaryOp::Mul, OpKind::Mul, "mul", a, b);
  if (needs_grad(a, b)) {
    const bool na = a.requires_grad(), nb = b.requires_grad();
    record(OpKind::Mul, out, {a, b}, [a, b, na, nb](const Tensor& g) {
      return Grads{na ? mul(g, b) : Tensor(), nb ? mul(g, a) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary(BinaryOp::Div, OpKind::Div, "div", a, b);
  if (needs_grad(a, b)) {
    const Tensor& bd = b;
    Tensor od = out.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(OpKind::Div, out, {a, b}, [bd, od, na, nb](const Tensor& g) {
      Tensor ga = div(g, bd);
      return Grads{na ? ga : Tensor(), nb ? neg(mul(ga, od)) : Tensor()};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary(BinaryOp::Pow, OpKind::Pow, "pow", a, b);
  if (needs_grad(a, b)) {
    const Tensor &ad = a, &bd = b;
    Tensor od = out.detach();
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(OpKind::Pow, out, {a, b}, [ad, bd, od, na, nb](const Tensor& g) {
      Tensor ga, gb;
      if (na) ga = mul(g, mul(bd, pow(ad, sub(bd, 1.0))));
      if (nb) gb = mul(g, mul(od, log(ad)));
      return Grads{ga, gb};
    });
  }
  return out;
}

static Tensor extremum(BinaryOp op, OpKind kind, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = binary(op, kind, name, a, b);
  if (needs_grad(a, b)) {
    const Tensor &ad = a, &bd = b;
    bool is_max = op == BinaryOp::Maximum;
    record(kind, out, {a, b}, [ad, bd, is_max](const Tensor& g) {
      Tensor pick_a = is_max ? ge(ad, bd) : le(ad, bd);  // ties go to a
      return Grads{mul(g, pick_a), mul(g, rsub(1.0, pick_a))};
    });
  }
  return out;
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return extremum(BinaryOp::Maximum, OpKind::Maximum, "maximum", a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return extremum(BinaryOp::Minimum, OpKind::Minimum, "minimum", a, b);
}

Tensor eq(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Eq, OpKind::Compare, "eq", a, b);
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Gt, OpKind::Compare, "gt", a, b);
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Lt, OpKind::Compare, "lt", a, b);
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Ge, OpKind::Compare, "ge", a, b);
}
Tensor le(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Le, OpKind::Compare, "le", a, b);
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  LR_CHECK(x.defined() && mask.defined(), "masked_fill: undefined input");
  LR_CHECK(x.device() == mask.device(), "masked_fill: x {} on {} but mask {} on {}", x.shape(), x.device().str(),
           mask.shape(), mask.device().str());
  Tensor m = mask.dtype() == x.dtype() ? mask : mask.to(x.dtype());
  Shape s = broadcast_shapes(x.shape(), m.shape(), "masked_fill");
  LR_CHECK(s == x.shape(), "masked_fill: mask {} does not broadcast to x {}", mask.shape(), x.shape());
  Tensor out = binary(BinaryOp::MaskedFill, OpKind::MaskedFill, "masked_fill", x, m, value);
  if (needs_grad(x)) {
    Tensor md = m.detach();
    record(OpKind::MaskedFill, out, {x}, [md](const Tensor& g) { return Grads{masked_fill(g, md, 0.0)}; });
  }
  return out;
}

// ---- scalar forms

Tensor add(const Tensor& a, double s) {
  Tensor out = unary(UnaryOp::AddScalar, OpKind::AddScalar, a, s);
  if (needs_grad(a)) record(OpKind::AddScalar, out, {a}, [](const Tensor& g) { return Grads{g}; });
  return out;
}
Tensor sub(const Tensor& a, double s) {
  return add(a, -s);
}
Tensor mul(const Tensor& a, double s) {
  Tensor out = unary(UnaryOp::MulScalar, OpKind::MulScalar, a, s);
  if (needs_grad(a)) record(OpKind::MulScalar, out, {a}, [s](const Tensor& g) { return Grads{mul(g, s)}; });
  return out;
}
Tensor div(const Tensor& a, double s) {
  return mul(a, 1.0 / s);
}
Tensor pow(const Tensor& a, double e) {
  Tensor out = unary(UnaryOp::PowScalar, OpKind::PowScalar, a, e);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    record(OpKind::PowScalar, out, {a}, [ad, e](const Tensor& g) { return Grads{mul(g, mul(pow(ad, e - 1.0), e))}; });
  }
  return out;
}
Tensor rsub(double s, const Tensor& a) {
  Tensor out = unary(UnaryOp::RSubScalar, OpKind::RSubScalar, a, s);
  if (needs_grad(a)) record(OpKind::RSubScalar, out, {a}, [](const Tensor& g) { return Grads{neg(g)}; });
  return out;
}
Tensor rdiv(double s, const Tensor& a) {
  Tensor out = unary(UnaryOp::RDivScalar, OpKind::RDivScalar, a, s);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    Tensor od = out.detach();
    record(OpKind::RDivScalar, out, {a}, [ad, od](const Tensor& g) { return Grads{neg(div(mul(g, od), ad))}; });
  }
  return out;
}

// ---- unary

Tensor neg(const Tensor& a) {
  Tensor out = unary(UnaryOp::Neg, OpKind::Neg, a);
  if (needs_grad(a)) record(OpKind::Neg, out, {a}, [](const Tensor& g) { return Grads{neg(g)}; });
  return out;
}
Tensor exp(const Tensor& a) {
  Tensor out = unary(UnaryOp::Exp, OpKind::Exp, a);
  if (needs_grad(a)) {
    Tensor od = out.detach();
    record(OpKind::Exp, out, {a}, [od](const Tensor& g) { return Grads{mul(g, od)}; });
  }
  return out;
}
Tensor log(const Tensor& a) {
  Tensor out = unary(UnaryOp::Log, OpKind::Log, a);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    record(OpKind::Log, out, {a}, [ad](const Tensor& g) { return Grads{div(g, ad)}; });
  }
  return out;
}
Tensor sqrt(const Tensor& a) {
  Tensor out = unary(UnaryOp::Sqrt, OpKind::Sqrt, a);
  if (needs_grad(a)) {
    Tensor od = out.detach();
    record(OpKind::Sqrt, out, {a}, [od](const Tensor& g) { return Grads{div(mul(g, 0.5), od)}; });
  }
  return out;
}
Tensor rsqrt(const Tensor& a) {
  Tensor out = unary(UnaryOp::Rsqrt, OpKind::Rsqrt, a);
  if (needs_grad(a)) {
    Tensor od = out.detach();
    record(OpKind::Rsqrt, out, {a}, [od](const Tensor& g) { return Grads{mul(mul(g, pow(od, 3.0)), -0.5)}; });
  }
  return out;
}
Tensor tanh(const Tensor& a) {
  Tensor out = unary(UnaryOp::Tanh, OpKind::Tanh, a);
  if (needs_grad(a)) {
    Tensor od = out.detach();
    record(OpKind::Tanh, out, {a}, [od](const Tensor& g) { return Grads{mul(g, rsub(1.0, mul(od, od)))}; });
  }
  return out;
}
Tensor sigmoid(const Tensor& a) {
  Tensor out = unary(UnaryOp::Sigmoid, OpKind::Sigmoid, a);
  if (needs_grad(a)) {
    Tensor od = out.detach();
    record(OpKind::Sigmoid, out, {a}, [od](const Tensor& g) { return Grads{mul(g, mul(od, rsub(1.0, od)))}; });
  }
  return out;
}
Tensor relu(const Tensor& a) {
  Tensor out = unary(UnaryOp::Relu, OpKind::Relu, a);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    record(OpKind::Relu, out, {a}, [ad](const Tensor& g) { return Grads{relu_backward(ad, g)}; });
  }
  return out;
}
void add_bias_relu_(const Tensor& y, const Tensor& bias, bool relu) {
  LR_CHECK(y.defined() && y.is_contiguous() && !y.requires_grad(),
           "add_bias_relu_: y must be a defined, contiguous tensor outside autograd");
  if (y.numel() == 0) return;
  if (bias.defined()) {
    check_same("add_bias_relu_", y, bias);
    LR_CHECK(bias.dim() == 1 && y.dim() >= 1 && bias.size(0) == y.size(-1),
             "add_bias_relu_: bias {} must be [{}] for y {}", bias.shape(), y.dim() ? y.size(-1) : 0, y.shape());
    kernel(y.device(), &Backend::binary, OpKind::Add)(BinaryOp::Add, y, broadcast_view(bias, y.shape()), y, 0);
  }
  if (relu) kernel(y.device(), &Backend::unary, OpKind::Relu)(UnaryOp::Relu, y, y, 0);
}
Tensor relu_backward(const Tensor& y, const Tensor& g) {
  return binary(BinaryOp::ReluBackward, OpKind::Relu, "relu_backward", y, g);
}
Tensor gelu(const Tensor& a) {
  Tensor out = unary(UnaryOp::Gelu, OpKind::Gelu, a);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    record(OpKind::Gelu, out, {a}, [ad](const Tensor& g) {
      return Grads{binary(BinaryOp::GeluBackward, OpKind::Gelu, "gelu_backward", ad, g)};
    });
  }
  return out;
}
Tensor abs(const Tensor& a) {
  Tensor out = unary(UnaryOp::Abs, OpKind::Abs, a);
  if (needs_grad(a)) {
    const Tensor& ad = a;
    record(OpKind::Abs, out, {a},
           [ad](const Tensor& g) { return Grads{mul(g, unary(UnaryOp::Sign, OpKind::Abs, ad))}; });
  }
  return out;
}

}  // namespace lowrank
