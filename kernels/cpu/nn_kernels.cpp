// Puts the CPU kernels of the nn-op families (each defined in a file of its own) into their slots.
#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {

// Fused Adam/AdamW update (adam.cpp).
void adam_step(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v);

void register_nn_kernels(Backend& t) {
  t.softmax = softmax;
  t.softmax_backward = softmax_backward;
  t.cross_entropy = cross_entropy;
  t.cross_entropy_backward = cross_entropy_backward;
  t.layer_norm = layer_norm;
  t.layer_norm_backward = layer_norm_backward;
  t.embedding = embedding;
  t.embedding_backward = embedding_backward;
  t.lora_forward = lora_forward;
  t.lora_backward = lora_backward;
  t.svd = svd;
  t.adam_step = adam_step;
}

}  // namespace lowrank::cpu
