// The Fashion-MNIST MLP.
#include "models/mlp.h"

#include <algorithm>

namespace lowrank::models {

Mlp::Mlp(const MlpConfig& c, nn::Generator& gen) : config_(c) {
  LR_CHECK(c.inputs > 0 && c.classes > 0, "Mlp: inputs and classes must be positive, got {} and {}", c.inputs,
           c.classes);
  layers_ = register_module("layers", std::make_shared<nn::Sequential>());
  layers_->add(std::make_shared<nn::Flatten>());
  int64_t in = c.inputs;
  auto dense = [&](int64_t units, nn::Activation act) {
    nn::DenseOptions o{.activation = act,
                       .kernel_init = c.kernel_init,
                       .bias_init = c.bias_init,
                       .dtype = c.dtype,
                       .device = c.device};
    layers_->add(std::make_shared<nn::Dense>(in, units, o, gen));
    in = units;
  };
  for (int64_t h : c.hidden) {
    LR_CHECK(h > 0, "Mlp: hidden sizes must be positive, got {}", c.hidden);
    dense(h, nn::Activation::Relu);
  }
  dense(c.classes, nn::Activation::Linear);
}

Tensor Mlp::forward(const Tensor& x) {
  LR_CHECK(x.defined() && x.dim() >= 2 && x.numel() / std::max<int64_t>(x.size(0), 1) == config_.inputs,
           "Mlp: input {} must be [N, ...] with {} values per sample", x.defined() ? x.shape() : Shape{},
           config_.inputs);
  return (*layers_)(x);
}

std::string Mlp::describe() const {
  return detail::format("Mlp({} -> {} -> {})", config_.inputs, config_.hidden, config_.classes);
}

std::string Mlp::dense_path(size_t i) {
  return "layers." + std::to_string(i + 1);
}

}  // namespace lowrank::models
