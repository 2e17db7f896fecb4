// Records Nodes and runs reverse mode: topological order, gradient accumulation, graph freeing.
#include "core/autograd.h"

#include <unordered_map>

#include "core/ops.h"

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
}  // namespace

bool grad_mode_enabled() { return g_grad_mode; }
void set_grad_mode(bool on) { g_grad_mode = on; }

void record(OpKind kind, Tensor& out, std::initializer_list<Tensor> inputs, BackwardFn fn) {
  auto node = std::make_shared<Node>();
  node->kind = kind;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs)
    node->inputs.push_back(t.defined() && t.requires_grad() ? t.impl_ptr() : nullptr);
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
  // Iterative DFS post-order gives a topological order (inputs before users); walk it backwards.
  std::vector<Node*> order;
  std::unordered_map<Node*, bool> visited;
  std::vector<std::pair<Node*, size_t>> stack{{grad_fn().get(), 0}};
  visited[grad_fn().get()] = true;
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      TensorImpl* in = node->inputs[next++].get();
      if (in && in->grad_fn && !visited[in->grad_fn.get()]) {
        visited[in->grad_fn.get()] = true;
        stack.push_back({in->grad_fn.get(), 0});
      }
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  std::unordered_map<Node*, Tensor> grads;
  grads[grad_fn().get()] = seed;
  // Keep every node alive until the walk ends: freeing a node's inputs may drop the last owner.
  std::vector<std::shared_ptr<Node>> keep;
  keep.reserve(order.size());
  for (size_t i = order.size(); i-- > 0;) {
    Node* node = order[i];
    auto it = grads.find(node);
    if (it == grads.end()) continue;
    // Going on without this node would silently drop every gradient that flows through it.
    LR_CHECK(node->backward, "backward: the graph through a {} node was freed by an earlier backward(); run the "
             "forward pass again", op_name(node->kind));
    Tensor g = std::move(it->second);
    grads.erase(it);
    std::vector<Tensor> gin = node->backward(g);
    LR_CHECK(gin.size() == node->inputs.size(), "backward of {} returned {} gradients for {} inputs",
             op_name(node->kind), gin.size(), node->inputs.size());
    for (size_t k = 0; k < gin.size(); ++k) {
      const auto& in = node->inputs[k];
      if (!in || !gin[k].defined()) continue;
      if (in->grad_fn) {
        Tensor& slot = grads[in->grad_fn.get()];
        if (gin[k].shape() != in->shape) gin[k] = sum_to(gin[k], in->shape);
        slot = slot.defined() ? add(slot, gin[k]) : gin[k];
        keep.push_back(in->grad_fn);
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
