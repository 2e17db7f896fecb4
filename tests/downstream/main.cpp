// Uses the installed library: a matmul with its gradient and a fused LoRA op, checked by value.
#include <cstdio>

#include "core/ops.h"

int main() {
  using namespace lowrank;
  Tensor a = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor b = Tensor::from_vector(std::vector<double>{5, 6, 7, 8}, {2, 2});
  Tensor y = sum(matmul(a, b));
  y.backward();
  // sum(a b) = 19 + 22 + 43 + 50; d/da[i,k] = sum_j b[k,j] = (11, 15).
  const bool ok_value = y.item() == 134.0;
  const auto g = a.grad().to_vector<double>();
  const bool ok_grad = g == std::vector<double>{11, 15, 11, 15};
  Tensor x = Tensor::ones({3, 4}), w = Tensor::ones({2, 4}), la = Tensor::ones({1, 4}), lb = Tensor::ones({2, 1});
  const bool ok_lora = lora_linear(x, w, Tensor(), la, lb, 0.5, 1.0).to_vector<float>()[0] == 6.0f;  // 4 + 0.5*4
  std::printf("%s\n", ok_value && ok_grad && ok_lora ? "downstream ok" : "downstream WRONG");
  return ok_value && ok_grad && ok_lora ? 0 : 1;
}
