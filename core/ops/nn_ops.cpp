// Neural-network ops: softmax/log_softmax on any axis, fused cross-entropy, layer_norm,
// embedding and dropout. Checks happen here once; kernels see contiguous row-major blocks.
#include <algorithm>

#include "core/ops/op_util.h"

namespace lowrank {
namespace {
using Grads = std::vector<Tensor>;

// A contiguous tensor seen as [rows, cols] (the layout the row kernels take).
Tensor as_rows(const Tensor& t, int64_t rows, int64_t cols) {
  return Tensor::view_of(t.storage(), {rows, cols}, {cols, 1}, t.offset(), t.dtype());
}

Tensor softmax_impl(const Tensor& x, int64_t axis, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  const OpKind kind = log ? OpKind::LogSoftmax : OpKind::Softmax;
  detail::check_float(name, x);
  const int ax = normalize_axis(axis, x.dim(), name);
  const int last = static_cast<int>(x.dim()) - 1;
  const bool moved = ax != last;
  const int64_t cols = x.shape()[ax], rows = cols == 0 ? 0 : x.numel() / cols;
  // The kernel works on the last axis: other axes are swapped there and back.
  Tensor xc = (moved ? x.detach().transpose(ax, last) : x.detach()).contiguous();
  Tensor y = Tensor::empty(xc.shape(), x.dtype(), x.device());
  if (rows > 0) kernel(x.device(), &Backend::softmax, kind)(as_rows(xc, rows, cols), as_rows(y, rows, cols), log);
  Tensor out = moved ? y.transpose(ax, last).contiguous() : y;
  if (needs_grad(x)) {
    // y may be `out` itself: the node keeps a detached handle, or it would own its own output.
    record(kind, out, {x}, [y = y.detach(), ax, last, moved, rows, cols, log, kind](const Tensor& g) {
      Tensor gc = (moved ? g.transpose(ax, last) : g).contiguous();
      Tensor gx = Tensor::empty(gc.shape(), g.dtype(), g.device());
      if (rows > 0)
        kernel(g.device(), &Backend::softmax_backward, kind)(as_rows(y, rows, cols), as_rows(gc, rows, cols),
                                                             as_rows(gx, rows, cols), log);
      return Grads{moved ? gx.transpose(ax, last) : gx};
    });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) {
  return softmax_impl(x, axis, false);
}
Tensor log_softmax(const Tensor& x, int64_t axis) {
  return softmax_impl(x, axis, true);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  const char* name = "cross_entropy";
  detail::check_float(name, logits);
  LR_CHECK(labels.defined(), "{}: undefined labels", name);
  LR_CHECK(labels.dtype() == DType::I64, "{}: labels must be int64, got {} {}", name, dtype_name(labels.dtype()),
           labels.shape());
  LR_CHECK(logits.device() == labels.device(), "{}: logits {} on {} but labels {} on {}", name, logits.shape(),
           logits.device().str(), labels.shape(), labels.device().str());
  LR_CHECK(logits.dim() >= 1, "{}: logits need a class axis, got shape {}", name, logits.shape());
  const Shape row_shape(logits.shape().begin(), logits.shape().end() - 1);
  LR_CHECK(labels.shape() == row_shape, "{}: labels {} must have the shape of logits {} without its last axis ({})",
           name, labels.shape(), logits.shape(), row_shape);
  const int64_t c = logits.size(-1), n = labels.numel();
  LR_CHECK(c > 0 || n == 0, "{}: logits {} have no classes", name, logits.shape());

  Tensor lg = logits.detach().contiguous(), lb = labels.detach().contiguous();
  // Labels are read on the host once: a wrong label is a user error that deserves a message
  // (a kernel cannot throw per element), and the mean divides by the non-ignored count.
  const std::vector<int64_t> host = lb.to_vector<int64_t>();
  int64_t count = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    if (host[i] == ignore_index) continue;
    LR_CHECK(host[i] >= 0 && host[i] < c,
             "{}: label {} at position {} is out of range for {} classes (logits {}, ignore_index {})", name, host[i],
             i, c, logits.shape(), ignore_index);
    ++count;
  }
  // Every row ignored: the mean over no rows is defined as 0 (and its gradient is 0), not NaN.
  const double inv = count > 0 ? 1.0 / static_cast<double>(count) : 0.0;
  Tensor loss, lse;  // lse: each row's log-sum-exp, so backward need not recompute it
  {
    NoGradGuard ng;
    if (count == 0) {
      loss = Tensor::zeros({}, logits.dtype(), logits.device());
    } else {
      Tensor losses = Tensor::empty({n}, logits.dtype(), logits.device());
      lse = Tensor::empty({n}, logits.dtype(), logits.device());
      kernel(logits.device(), &Backend::cross_entropy, OpKind::CrossEntropy)(as_rows(lg, n, c), lb, ignore_index,
                                                                             losses, lse);
      loss = mul(sum(losses), inv);
    }
  }
  if (needs_grad(logits)) {
    Shape in_shape = logits.shape();
    record(OpKind::CrossEntropy, loss, {logits}, [lg, lb, lse, ignore_index, inv, n, c, in_shape](const Tensor& g) {
      Tensor gx = Tensor::empty(in_shape, g.dtype(), g.device());
      if (inv == 0.0) return Grads{gx.zero_()};
      Tensor gl = mul(g, inv).expand({n}).contiguous();
      kernel(g.device(), &Backend::cross_entropy_backward, OpKind::CrossEntropy)(as_rows(lg, n, c), lb, ignore_index,
                                                                                 lse, gl, as_rows(gx, n, c));
      return Grads{gx};
    });
  }
  return loss;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* name = "layer_norm";
  detail::check_float(name, x);
  LR_CHECK(x.dim() >= 1, "{}: needs at least one axis, got shape {}", name, x.shape());
  const int64_t d = x.size(-1), rows = d == 0 ? 0 : x.numel() / d;
  LR_CHECK(d > 0, "{}: the last axis of {} is empty", name, x.shape());
  LR_CHECK(eps >= 0, "{}: eps must be >= 0, got {}", name, eps);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    detail::check_same(name, x, *p);
    LR_CHECK(p->shape() == Shape{d}, "{}: {} {} must be [{}] for x {}", name, p == &weight ? "weight" : "bias",
             p->shape(), d, x.shape());
  }
  // The kernels always get a weight and a bias: absent ones become ones and zeros.
  Tensor xc = x.detach().contiguous();
  Tensor w = weight.defined() ? weight.detach().contiguous() : Tensor::ones({d}, x.dtype(), x.device());
  Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor::zeros({d}, x.dtype(), x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device()), rstd = Tensor::empty({rows}, x.dtype(), x.device());
  if (rows > 0)
    kernel(x.device(), &Backend::layer_norm, OpKind::LayerNorm)(as_rows(xc, rows, d), w, b, eps, as_rows(y, rows, d),
                                                                mean, rstd);
  if (needs_grad(x, weight, bias)) {
    const bool nx = x.requires_grad(), nw = weight.defined() && weight.requires_grad(),
               nb = bias.defined() && bias.requires_grad();
    record(OpKind::LayerNorm, y, {x, weight, bias}, [xc, w, mean, rstd, rows, d, nx, nw, nb](const Tensor& g) {
      Tensor gc = g.contiguous();
      Tensor gx = Tensor::empty(xc.shape(), g.dtype(), g.device());
      Tensor gw = Tensor::empty({d}, g.dtype(), g.device()), gb = Tensor::empty({d}, g.dtype(), g.device());
      if (rows > 0) {
        kernel(g.device(), &Backend::layer_norm_backward, OpKind::LayerNorm)(
            as_rows(xc, rows, d), w, mean, rstd, as_rows(gc, rows, d), as_rows(gx, rows, d), gw, gb);
      } else {
        gw.zero_(), gb.zero_();
      }
      return Grads{nx ? gx : Tensor(), nw ? gw : Tensor(), nb ? gb : Tensor()};
    });
  }
  return y;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  const char* name = "embedding";
  detail::check_float(name, weight);
  LR_CHECK(weight.dim() == 2, "{}: weight must be [vocab, dim], got {}", name, weight.shape());
  LR_CHECK(ids.defined(), "{}: undefined ids", name);
  LR_CHECK(ids.dtype() == DType::I64, "{}: ids must be int64, got {} {}", name, dtype_name(ids.dtype()), ids.shape());
  LR_CHECK(weight.device() == ids.device(), "{}: weight {} on {} but ids {} on {}", name, weight.shape(),
           weight.device().str(), ids.shape(), ids.device().str());
  const int64_t v = weight.size(0), d = weight.size(1), n = ids.numel();
  Tensor wc = weight.detach().contiguous(), idc = ids.detach().contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(d);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  if (n > 0) {
    Tensor flat_ids = Tensor::view_of(idc.storage(), {n}, {1}, idc.offset(), DType::I64);
    if (!kernel(weight.device(), &Backend::embedding, OpKind::Embedding)(wc, flat_ids, as_rows(out, n, d))) {
      // Only the error path reads the ids back, to name the first bad one.
      const std::vector<int64_t> host = idc.to_vector<int64_t>();
      for (size_t i = 0; i < host.size(); ++i)
        LR_CHECK(host[i] >= 0 && host[i] < v,
                 "{}: id {} at position {} is out of range for a vocabulary of {} (weight {})", name, host[i], i, v,
                 weight.shape());
      LR_FAIL("{}: the kernel rejected ids {} for a vocabulary of {}", name, ids.shape(), v);
    }
  }
  if (needs_grad(weight)) {
    Shape ws = weight.shape();
    record(OpKind::Embedding, out, {weight}, [idc, ws, n, d](const Tensor& g) {
      Tensor gw = Tensor::zeros(ws, g.dtype(), g.device());
      if (n > 0) {
        Tensor gc = g.contiguous();
        Tensor flat_ids = Tensor::view_of(idc.storage(), {n}, {1}, idc.offset(), DType::I64);
        kernel(g.device(), &Backend::embedding_backward, OpKind::Embedding)(as_rows(gc, n, d), flat_ids, gw);
      }
      return Grads{gw};
    });
  }
  return out;
}

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset) {
  detail::check_float("dropout", x);
  LR_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got {} (x {})", p, x.shape());
  if (!training || p == 0.0) return x;
  // keep = (u >= p) / (1 - p) with u from Philox(seed, offset): the same mask on every device.
  Tensor mask;
  {
    NoGradGuard ng;
    Tensor u = rand(x.shape(), seed, offset, x.dtype(), x.device());
    mask = mul(ge(u, Tensor::scalar(p, x.dtype(), x.device())), 1.0 / (1.0 - p));
  }
  return mul(x, mask);
}

}  // namespace lowrank
