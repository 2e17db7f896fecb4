// matmul: 2-D and batched (leading axes broadcast). Transposed views reach the GEMM as flags.
#include "core/ops/op_util.h"

namespace lowrank {
namespace {
using Grads = std::vector<Tensor>;

// How a [rows, cols] matrix view can be handed to a row-major GEMM without a copy.
struct MatLayout {
  bool ok = false, trans = false;
  int64_t ld = 0;
};

MatLayout mat_layout(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if (s_col == 1 && (rows == 1 || s_row >= cols)) return {true, false, std::max<int64_t>(rows == 1 ? cols : s_row, 1)};
  if (s_row == 1 && (cols == 1 || s_col >= rows)) return {true, true, std::max<int64_t>(cols == 1 ? rows : s_col, 1)};
  return {};
}

// One stride for all batch axes of `t` (expanded to `batch` + matrix axes), or false.
bool batch_stride(const Tensor& t, size_t nb, int64_t& stride) {
  stride = 0;
  bool have = false;
  int64_t expect = 0;
  for (size_t i = nb; i-- > 0;) {
    if (t.shape()[i] == 1) continue;
    if (!have) {
      stride = t.strides()[i];
      expect = stride * t.shape()[i];
      have = true;
    } else {
      if (t.strides()[i] != expect) return false;
      expect *= t.shape()[i];
    }
  }
  return true;
}

Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in) {
  const int64_t m = a_in.size(-2), k = a_in.size(-1), n = b_in.size(-1);
  Shape ba(a_in.shape().begin(), a_in.shape().end() - 2), bb(b_in.shape().begin(), b_in.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device());
  if (out.numel() == 0) return out;
  if (k == 0) return out.fill_(0.0), out;

  Tensor a = a_in, b = b_in;
  // [..., m, k] x [k, n] with a's leading axes foldable into m: one big GEMM.
  if (b.dim() == 2 && a.dim() > 2) {
    int64_t rows = shape_numel(a.shape()) / k;
    bool fold = a.strides().back() == 1 || a.is_contiguous();
    if (fold) {
      // Foldable when every leading axis steps by (next extent * next stride).
      int64_t expect = a.strides()[a.dim() - 2];
      for (int64_t i = a.dim() - 3; i >= 0 && fold; --i) {
        expect *= a.shape()[i + 1];
        if (a.shape()[i] != 1 && a.strides()[i] != expect) fold = false;
      }
    }
    if (fold && a.strides().back() == 1) {
      Tensor af = Tensor::view_of(a.storage(), {rows, k}, {a.strides()[a.dim() - 2], 1}, a.offset(), a.dtype());
      Tensor of = Tensor::view_of(out.storage(), {rows, n}, {n, 1}, 0, out.dtype());
      MatLayout lb = mat_layout(k, n, b.strides()[0], b.strides()[1]);
      if (!lb.ok) b = b.contiguous(), lb = {true, false, n};
      GemmArgs g;
      g.m = rows, g.n = n, g.k = k;
      g.trans_a = false, g.lda = std::max<int64_t>(a.strides()[a.dim() - 2], k);
      g.trans_b = lb.trans, g.ldb = lb.ld, g.ldc = n;
      kernel(a.device(), &Backend::gemm, OpKind::Matmul)(g, af, b, of);
      return out;
    }
  }
  Shape ea = batch, eb = batch;
  ea.push_back(m), ea.push_back(k), eb.push_back(k), eb.push_back(n);
  a = detail::broadcast_view(a, ea);
  b = detail::broadcast_view(b, eb);
  size_t nb = batch.size();
  MatLayout la = mat_layout(m, k, a.strides()[nb], a.strides()[nb + 1]);
  MatLayout lb = mat_layout(k, n, b.strides()[nb], b.strides()[nb + 1]);
  int64_t sa = 0, sb = 0;
  if (!la.ok || !batch_stride(a, nb, sa)) {
    a = a.contiguous();
    la = {true, false, k};
    sa = m * k;
  }
  if (!lb.ok || !batch_stride(b, nb, sb)) {
    b = b.contiguous();
    lb = {true, false, n};
    sb = k * n;
  }
  GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.trans_a = la.trans, g.lda = la.ld, g.trans_b = lb.trans, g.ldb = lb.ld, g.ldc = n;
  g.batch = shape_numel(batch), g.stride_a = sa, g.stride_b = sb, g.stride_c = m * n;
  kernel(a.device(), &Backend::gemm, OpKind::Matmul)(g, a, b, out);
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_same("matmul", a, b);
  detail::check_float("matmul", a);
  LR_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: needs operands with at least 2 axes, got {} and {}", a.shape(),
           b.shape());
  LR_CHECK(a.size(-1) == b.size(-2), "matmul: shapes {} and {} do not match (inner sizes {} and {})", a.shape(),
           b.shape(), a.size(-1), b.size(-2));
  Tensor out = matmul_forward(a, b);
  if (needs_grad(a, b)) {
    const Tensor &ad = a, &bd = b;
    bool na = a.requires_grad(), nb = b.requires_grad();
    record(OpKind::Matmul, out, {a, b}, [ad, bd, na, nb](const Tensor& g) {
      Tensor ga, gb;
      if (na) ga = sum_to(matmul(g, bd.mT()), ad.shape());
      if (nb) {
        if (bd.dim() == 2 && ad.dim() > 2) {
          // Sum over the folded batch inside one GEMM: a^T [k, B*m] @ g [B*m, n].
          Tensor a2 = ad.reshape({-1, ad.size(-1)}), g2 = g.reshape({-1, g.size(-1)});
          gb = matmul(a2.mT(), g2);
        } else {
          gb = sum_to(matmul(ad.mT(), g), bd.shape());
        }
      }
      return Grads{ga, gb};
    });
  }
  return out;
}

}  // namespace lowrank
