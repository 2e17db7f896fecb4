// Records Nodes and runs reverse mode: topological order, gradient accumulation, graph freeing.
#include "core/autograd.h"

#include <vector>

#include "core/ops.h"
#include "core/pool.h"

namespace lowrank {
namespace {
thread_local bool g_grad_mode = true;

// `g` arrives moved-in: when nothing else holds its storage it becomes the leaf's grad as is.
void accumulate_leaf(TensorImpl* leaf, Tensor g) {
  if (g.shape() != leaf->shape) g = sum_to(g, leaf->shape);
  if (g.dtype() != leaf->dtype) g = g.to(leaf->dtype);
  if (!g.is_contiguous() || g.impl_ptr().use_count() > 1 || g.storage().use_count() > 1)
    g = g.clone();  // a grad never aliases another tensor: optimizers update grads in place
  if (leaf->grad) {
    Tensor prev(leaf->grad);
    leaf->grad = add(prev, g).impl_ptr();
  } else {
    leaf->grad = g.impl_ptr();
  }
}
// Node* -> dense id, open addressing: backward() looks nodes up once per edge, and a
// std::unordered_map allocates per entry.
class NodeIds {
 public:
  NodeIds() : keys_(64, nullptr), vals_(64, 0) {}
  // The id of `n`, inserting it with `id` when absent.
  int insert(Node* n, int id) {
    if (2 * (count_ + 1) > keys_.size()) grow();
    size_t i = slot(n);
    if (keys_[i] == n) return vals_[i];
    keys_[i] = n;
    vals_[i] = id;
    ++count_;
    return id;
  }
  int find(Node* n) const { return vals_[slot(n)]; }  // n must be present

 private:
  size_t slot(Node* n) const {
    const size_t mask = keys_.size() - 1;
    size_t i = (reinterpret_cast<uintptr_t>(n) >> 4) * 0x9E3779B97F4A7C15ull & mask;
    while (keys_[i] != nullptr && keys_[i] != n) i = (i + 1) & mask;
    return i;
  }
  void grow() {
    std::vector<Node*> old_keys = std::move(keys_);
    std::vector<int> old_vals = std::move(vals_);
    keys_.assign(old_keys.size() * 2, nullptr);
    vals_.assign(old_keys.size() * 2, 0);
    for (size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i]) {
        const size_t j = slot(old_keys[i]);
        keys_[j] = old_keys[i];
        vals_[j] = old_vals[i];
      }
  }
  std::vector<Node*> keys_;
  std::vector<int> vals_;
  size_t count_ = 0;
};

}  // namespace

bool grad_mode_enabled() {
  return g_grad_mode;
}
void set_grad_mode(bool on) {
  g_grad_mode = on;
}

void record(OpKind kind, Tensor& out, std::initializer_list<Tensor> inputs, BackwardFn fn) {
  auto node = detail::make_pooled<Node>();
  node->kind = kind;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) node->inputs.push_back(t.defined() && t.requires_grad() ? t.impl_ptr() : nullptr);
  node->backward = std::move(fn);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

void Tensor::backward(const Tensor& grad) const {
  LR_CHECK(requires_grad(), "backward: tensor of shape {} does not require grad", shape());
  Tensor seed = grad;
  if (!seed.defined()) {
    LR_CHECK(numel() == 1, "backward: implicit gradient needs a scalar, got shape {}; pass a gradient", shape());
    seed = Tensor::ones(shape(), dtype(), device());
  }
  LR_CHECK(seed.shape() == shape(), "backward: gradient shape {} does not match tensor shape {}", seed.shape(),
           shape());
  NoGradGuard no_grad;
  if (!grad_fn()) {
    accumulate_leaf(impl(), seed.clone());
    return;
  }
  // Nodes get dense ids in discovery order. `owned` keeps every node alive until the walk ends:
  // freeing a node's inputs may drop the last other owner of a node still to run.
  NodeIds ids;
  std::vector<std::shared_ptr<Node>> owned;
  std::vector<int> order;  // post-order of the DFS: inputs before their users
  std::vector<std::pair<int, size_t>> stack;
  auto discover = [&](const std::shared_ptr<Node>& n) {
    const int id = ids.insert(n.get(), static_cast<int>(owned.size()));
    if (id == static_cast<int>(owned.size())) {
      owned.push_back(n);
      stack.emplace_back(id, 0);
    }
  };
  discover(grad_fn());
  while (!stack.empty()) {
    auto& [id, next] = stack.back();
    Node* node = owned[static_cast<size_t>(id)].get();
    if (next < node->inputs.size()) {
      TensorImpl* in = node->inputs[next++].get();
      if (in && in->grad_fn) discover(in->grad_fn);  // may reallocate `stack`: no use of id/next after
    } else {
      order.push_back(id);
      stack.pop_back();
    }
  }
  std::vector<Tensor> grads(owned.size());
  grads[0] = seed;
  for (size_t i = order.size(); i-- > 0;) {
    const auto id = static_cast<size_t>(order[i]);
    Node* node = owned[id].get();
    if (!grads[id].defined()) continue;
    // Going on without this node would silently drop every gradient that flows through it.
    LR_CHECK(node->backward,
             "backward: the graph through a {} node was freed by an earlier backward(); run the "
             "forward pass again",
             op_name(node->kind));
    Tensor g = std::move(grads[id]);
    std::vector<Tensor> gin = node->backward(g);
    LR_CHECK(gin.size() == node->inputs.size(), "backward of {} returned {} gradients for {} inputs",
             op_name(node->kind), gin.size(), node->inputs.size());
    for (size_t k = 0; k < gin.size(); ++k) {
      const auto& in = node->inputs[k];
      if (!in || !gin[k].defined()) continue;
      if (in->grad_fn) {
        Tensor& slot = grads[static_cast<size_t>(ids.find(in->grad_fn.get()))];
        if (gin[k].shape() != in->shape) gin[k] = sum_to(gin[k], in->shape);
        slot = slot.defined() ? add(slot, gin[k]) : std::move(gin[k]);
      } else if (in->requires_grad) {
        accumulate_leaf(in.get(), std::move(gin[k]));
      }
    }
    // Free the graph as we go: the node drops what it saved and its links to inputs.
    node->backward = nullptr;
    node->inputs.clear();
  }
}

}  // namespace lowrank
