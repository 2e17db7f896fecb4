// Reductions over any set of axes, with keepdim; sum_to (the gradient of broadcasting).
#include "core/ops/op_util.h"

namespace lowrank {
namespace detail {

uint64_t axes_mask(const std::vector<int64_t>& axes, int64_t ndim, const char* op) {
  LR_CHECK(ndim <= 64, "{}: at most 64 axes, got {}", op, ndim);
  if (axes.empty()) return ndim == 64 ? ~0ull : ((1ull << ndim) - 1);
  uint64_t mask = 0;
  for (int64_t a : axes) {
    int ax = normalize_axis(a, ndim, op);
    LR_CHECK(!(mask & (1ull << ax)), "{}: axis {} repeated in {}", op, ax, axes);
    mask |= 1ull << ax;
  }
  return mask;
}

Shape reduced_shape(const Shape& s, uint64_t mask, bool keepdim) {
  Shape out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (mask & (1ull << i)) {
      if (keepdim) out.push_back(1);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace detail

namespace {
using Grads = std::vector<Tensor>;

// Reduced values with keepdim shape (no autograd).
Tensor reduce_raw(ReduceOp op, OpKind kind, const Tensor& x, uint64_t mask) {
  Tensor out = Tensor::empty(detail::reduced_shape(x.shape(), mask, true), x.dtype(), x.device());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) {
    LR_CHECK(op == ReduceOp::Sum, "{}: cannot reduce an empty tensor of shape {}", op_name(kind), x.shape());
    out.fill_(0.0);
    return out;
  }
  kernel(x.device(), &Backend::reduce, kind)(op, x, out, mask);
  return out;
}

Tensor finish(const Tensor& kept, uint64_t mask, bool keepdim) {
  if (keepdim) return kept;
  return Tensor::view_of(kept.storage(), detail::reduced_shape(kept.shape(), mask, false),
                         contiguous_strides(detail::reduced_shape(kept.shape(), mask, false)), 0, kept.dtype());
}

int64_t reduced_count(const Shape& s, uint64_t mask) {
  int64_t n = 1;
  for (size_t i = 0; i < s.size(); ++i)
    if (mask & (1ull << i)) n *= s[i];
  return n;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  detail::check_float("sum", x);
  uint64_t mask = detail::axes_mask(axes, x.dim(), "sum");
  Tensor out = finish(reduce_raw(ReduceOp::Sum, OpKind::Sum, x, mask), mask, keepdim);
  if (needs_grad(x)) {
    Shape in_shape = x.shape(), kept = detail::reduced_shape(x.shape(), mask, true);
    record(OpKind::Sum, out, {x},
           [in_shape, kept](const Tensor& g) { return Grads{g.reshape(kept).expand(in_shape)}; });
  }
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  detail::check_float("mean", x);
  uint64_t mask = detail::axes_mask(axes, x.dim(), "mean");
  int64_t n = reduced_count(x.shape(), mask);
  LR_CHECK(n > 0, "mean: cannot average over zero elements of shape {}", x.shape());
  Tensor kept = reduce_raw(ReduceOp::Sum, OpKind::Mean, x, mask);
  kernel(x.device(), &Backend::unary, OpKind::Mean)(UnaryOp::MulScalar, kept, kept, 1.0 / static_cast<double>(n));
  Tensor out = finish(kept, mask, keepdim);
  if (needs_grad(x)) {
    Shape in_shape = x.shape(), ks = detail::reduced_shape(x.shape(), mask, true);
    double inv = 1.0 / static_cast<double>(n);
    record(OpKind::Mean, out, {x},
           [in_shape, ks, inv](const Tensor& g) { return Grads{mul(g.reshape(ks), inv).expand(in_shape)}; });
  }
  return out;
}

Tensor max(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  detail::check_float("max", x);
  uint64_t mask = detail::axes_mask(axes, x.dim(), "max");
  Tensor kept = reduce_raw(ReduceOp::Max, OpKind::Max, x, mask);
  Tensor out = finish(kept, mask, keepdim);
  if (needs_grad(x)) {
    const Tensor& xd = x;
    Tensor kd = kept.detach();  // kept may be out itself
    std::vector<int64_t> ax;
    for (int64_t i = 0; i < x.dim(); ++i)
      if (mask & (1ull << i)) ax.push_back(i);
    Shape ks = kept.shape();
    record(OpKind::Max, out, {x}, [xd, kd, ax, ks](const Tensor& g) {
      Tensor hit = eq(xd, kd);  // ties share the gradient equally
      Tensor count = sum(hit, ax, true);
      return Grads{mul(hit, div(g.reshape(ks), count))};
    });
  }
  return out;
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdim) {
  detail::check_float("argmax", x);
  int ax = normalize_axis(axis, x.dim(), "argmax");
  LR_CHECK(x.shape()[ax] > 0, "argmax: axis {} of shape {} is empty", ax, x.shape());
  uint64_t mask = 1ull << ax;
  Tensor out = Tensor::empty(detail::reduced_shape(x.shape(), mask, true), DType::I64, x.device());
  if (out.numel() > 0) kernel(x.device(), &Backend::argmax, OpKind::Argmax)(x, out, ax);
  return finish(out, mask, keepdim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  LR_CHECK(x.dim() >= static_cast<int64_t>(shape.size()), "sum_to: cannot sum shape {} down to {}", x.shape(), shape);
  size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      axes.push_back(static_cast<int64_t>(i));
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      axes.push_back(static_cast<int64_t>(i));
    } else {
      LR_CHECK(shape[i - lead] == x.shape()[i], "sum_to: cannot sum shape {} down to {}", x.shape(), shape);
    }
  }
  if (axes.empty()) return x.reshape(shape);
  return sum(x, axes, true).reshape(shape);
}

}  // namespace lowrank
