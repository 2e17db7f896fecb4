// Reverse-mode autograd: Nodes that keep only what their backward needs, recorded by ops,
// walked in topological order by Tensor::backward, then freed.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/op_list.h"
#include "core/tensor.h"

namespace lowrank {

// Returns one gradient per input of the node (an undefined Tensor where there is none).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  OpKind kind;
  std::vector<std::shared_ptr<TensorImpl>> inputs;  // null where the input needs no grad
  BackwardFn backward;
};

bool grad_mode_enabled();
void set_grad_mode(bool on);

// Turns recording off in its scope: inference, frozen weights, optimizer steps.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any of the tensors requires grad.
inline bool needs_grad(std::initializer_list<const Tensor*> ts) {
  if (!grad_mode_enabled()) return false;
  for (const Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
template <class... T>
bool needs_grad(const T&... ts) {
  return needs_grad({&ts...});
}

// Attaches a Node to `out`. Backward lambdas must not capture `out` itself (that would be a
// cycle): capture `out.detach()` when the output's values are needed.
void record(OpKind kind, Tensor& out, std::initializer_list<Tensor> inputs, BackwardFn fn);

}  // namespace lowrank
