// Shape ops that are not Tensor methods: concat, split, chunk, and free reshape/permute.
#include "core/ops/op_util.h"
#include "core/pool.h"

namespace lowrank {

Tensor reshape(const Tensor& x, const Shape& shape) {
  return x.reshape(shape);
}
Tensor permute(const Tensor& x, const std::vector<int>& dims) {
  return x.permute(dims);
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  LR_CHECK(!xs.empty(), "concat: no tensors given");
  const Tensor& first = xs[0];
  int ax = normalize_axis(axis, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[ax] = 0;
  for (const Tensor& t : xs) {
    detail::check_same("concat", first, t);
    LR_CHECK(t.dim() == first.dim(), "concat: shapes {} and {} have different ranks", first.shape(), t.shape());
    for (int64_t i = 0; i < t.dim(); ++i)
      LR_CHECK(i == ax || t.shape()[i] == first.shape()[i], "concat: shapes {} and {} differ outside axis {}",
               first.shape(), t.shape(), ax);
    out_shape[ax] += t.shape()[ax];
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t at = 0;
  bool any_grad = false;
  for (const Tensor& t : xs) {
    starts.push_back(at);
    if (t.numel() > 0) {
      NoGradGuard ng;
      out.slice(ax, at, at + t.shape()[ax]).copy_(t);
    }
    at += t.shape()[ax];
    any_grad = any_grad || needs_grad(t);
  }
  if (any_grad) {
    // record() takes an initializer list; build the node for any number of inputs by hand.
    auto node = detail::make_pooled<Node>();
    node->kind = OpKind::Concat;
    std::vector<int64_t> sizes;
    for (const Tensor& t : xs) {
      node->inputs.push_back(t.requires_grad() ? t.impl_ptr() : nullptr);
      sizes.push_back(t.shape()[ax]);
    }
    node->backward = [starts, sizes, ax](const Tensor& g) {
      std::vector<Tensor> gs;
      for (size_t i = 0; i < starts.size(); ++i) gs.push_back(g.slice(ax, starts[i], starts[i] + sizes[i]));
      return gs;
    };
    out.impl()->grad_fn = std::move(node);
    out.impl()->requires_grad = true;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  int ax = normalize_axis(axis, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    LR_CHECK(s >= 0, "split: negative size in {}", sizes);
    total += s;
  }
  LR_CHECK(total == x.shape()[ax], "split: sizes {} add up to {}, but axis {} of shape {} has {}", sizes, total, ax,
           x.shape(), x.shape()[ax]);
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(x.slice(ax, at, at + s));
    at += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t axis) {
  int ax = normalize_axis(axis, x.dim(), "chunk");
  LR_CHECK(chunks > 0, "chunk: chunks must be positive, got {}", chunks);
  int64_t n = x.shape()[ax], each = (n + chunks - 1) / chunks;
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < n; at += each) sizes.push_back(std::min(each, n - at));
  return split(x, sizes, ax);
}

}  // namespace lowrank
