// The fused scaled-dot-product attention op: checks, the resolved scale, and its autograd node,
// whose backward runs the per-device attention_backward kernel (dq, dk, dv) from the saved row
// log-sum-exp instead of a [B, H, Tq, Tk] probability tensor.
#include <cmath>

#include "core/ops/op_util.h"

namespace lowrank {
namespace {

// The kernels read D with unit stride and the other axes through their strides; anything else
// (a transposed or stepped last axis) is copied once.
Tensor unit_last_stride(const Tensor& t) {
  Tensor d = t.detach();
  return d.strides()[3] == 1 || d.size(3) == 1 ? d : d.contiguous();
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, double dropout_p,
                 uint64_t seed, uint64_t offset) {
  const char* op = "attention";
  detail::check_float(op, q);
  detail::check_same(op, q, k);
  detail::check_same(op, q, v);
  LR_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
           "{}: q, k, v must be [batch, time, heads, head_dim], got q {}, k {}, v {}", op, q.shape(), k.shape(),
           v.shape());
  LR_CHECK(k.shape() == v.shape(), "{}: k {} and v {} must have the same shape [B, Tk, H, D]", op, k.shape(),
           v.shape());
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3), Tk = k.size(1);
  LR_CHECK(k.size(0) == B && k.size(2) == H && k.size(3) == D,
           "{}: batch, heads and head_dim of q {} and k {} must agree", op, q.shape(), k.shape());
  LR_CHECK(D >= 1, "{}: head_dim must be at least 1, got q {}", op, q.shape());
  LR_CHECK(Tq <= Tk, "{}: q has more positions ({}) than k and v ({}); q {} k {}", op, Tq, Tk, q.shape(), k.shape());
  LR_CHECK(std::isfinite(scale), "{}: scale must be finite, got {}", op, scale);
  LR_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "{}: dropout_p must be in [0, 1), got {}", op, dropout_p);

  AttentionArgs args;
  args.batch = B, args.heads = H, args.tq = Tq, args.tk = Tk, args.head_dim = D;
  args.causal = causal;
  args.scale = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
  args.dropout_p = dropout_p, args.seed = seed, args.offset = offset;

  Tensor qd = unit_last_stride(q), kd = unit_last_stride(k), vd = unit_last_stride(v);
  Tensor out = Tensor::empty({B, Tq, H, D}, q.dtype(), q.device());
  Tensor lse = Tensor::empty({B, H, Tq}, q.dtype(), q.device());
  if (out.numel() > 0) kernel(q.device(), &Backend::attention_forward, OpKind::Attention)(args, qd, kd, vd, out, lse);

  if (needs_grad(q, k, v)) {
    const bool nq = q.requires_grad(), nk = k.requires_grad(), nv = v.requires_grad();
    record(OpKind::Attention, out, {q, k, v}, [=, o = out.detach()](const Tensor& g) {
      Device d = g.device();
      DType t = g.dtype();
      Tensor gq = nq ? Tensor::empty(qd.shape(), t, d) : Tensor();
      Tensor gk = nk ? Tensor::empty(kd.shape(), t, d) : Tensor();
      Tensor gv = nv ? Tensor::empty(vd.shape(), t, d) : Tensor();
      if (o.numel() > 0) {
        Tensor gc = g.is_contiguous() ? g : g.contiguous();
        kernel(d, &Backend::attention_backward, OpKind::Attention)(args, qd, kd, vd, o, lse, gc, gq, gk, gv);
      } else {  // no query rows: k and v had no effect
        if (nk) kernel(d, &Backend::fill, OpKind::Attention)(gk, 0.0);
        if (nv) kernel(d, &Backend::fill, OpKind::Attention)(gv, 0.0);
      }
      return std::vector<Tensor>{gq, gk, gv};
    });
  }
  return out;
}

}  // namespace lowrank
