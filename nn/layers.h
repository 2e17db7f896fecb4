// The basic layers: Dense (Keras semantics), Sequential, Flatten, activations, Dropout,
// Embedding and LayerNorm. EinsumDense is in nn/einsum_dense.h, losses and metrics in nn/loss.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/generator.h"
#include "nn/init.h"
#include "nn/module.h"

namespace lowrank::nn {

enum class Activation : uint8_t { Linear, Relu, Gelu, Tanh, Sigmoid };
// "linear" (or "none", ""), "relu", "gelu" (tanh approximation), "tanh", "sigmoid".
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);
Tensor apply_activation(Activation a, const Tensor& x);

struct DenseOptions {
  Activation activation = Activation::Linear;
  bool use_bias = true;
  Init kernel_init = Init::glorot_uniform();  // Keras' default; Init::kaiming_uniform() for PyTorch's
  Init bias_init = Init::zeros();             // Keras' default; PyTorch's is kaiming_uniform() too
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// y = activation(x W^T + b) over the last axis of x: Keras' Dense(units, activation, use_bias).
// The kernel is stored [units, in_features], PyTorch's Linear layout and the transpose of Keras'
// [in, out], so that a LoRA update B·A (B [out, r], A [r, in]) has the kernel's own layout and
// lora_linear takes the kernel as is. Initialisers see fan_in = in_features, fan_out = units,
// as Keras' would for its [in, out] kernel. Parameters: "kernel" and, with use_bias, "bias" [units].
class Dense : public Module {
 public:
  Dense(int64_t in_features, int64_t units, const DenseOptions& options = {}, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dense"; }
  std::string describe() const override;

  const Tensor& kernel() const { return kernel_; }  // [units, in_features]
  const Tensor& bias() const { return bias_; }      // [units], undefined without use_bias
  int64_t in_features() const { return in_; }
  int64_t units() const { return units_; }
  Activation activation() const { return activation_; }

 private:
  int64_t in_, units_;
  Activation activation_;
  Tensor kernel_, bias_;
};

// Runs its children in order; a child swapped with replace_submodule takes part from then on.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& layers);
  // Children are named "0", "1", ... in the order they are added, unless a name is given.
  Sequential& add(std::shared_ptr<Module> layer);
  Sequential& add(const std::string& name, std::shared_ptr<Module> layer);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return children().size(); }
  Module& operator[](size_t i) const;
};

// [N, d1, d2, ...] -> [N, d1·d2·...] (a view when x is contiguous).
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Flatten"; }
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

// The tanh approximation (GPT-2's), the only GELU core provides.
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GELU"; }
};

// Inverted dropout in training mode, identity in eval mode. Masks come from this layer's own
// Generator (seed given here); its offset advances per call, so saving generator() state and
// restoring it replays the same masks.
class Dropout : public Module {
 public:
  explicit Dropout(double rate, uint64_t seed = 0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::string describe() const override;
  double rate() const { return rate_; }
  Generator& generator() { return gen_; }

 private:
  double rate_;
  Generator gen_;
};

struct EmbeddingOptions {
  Init init = Init::uniform(0.05);  // Keras' default; GPT-2 uses Init::normal(0.02)
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// ids (int64, any shape) -> [..., dim]; parameter "embeddings" [vocab, dim] (Keras' name).
class Embedding : public Module {
 public:
  Embedding(int64_t vocab, int64_t dim, const EmbeddingOptions& options = {}, Generator& gen = default_generator());
  Tensor forward(const Tensor& ids) override;
  std::string type_name() const override { return "Embedding"; }
  std::string describe() const override;
  const Tensor& embeddings() const { return weight_; }

 private:
  int64_t vocab_, dim_;
  Tensor weight_;
};

struct LayerNormOptions {
  double eps = 1e-5;   // PyTorch's and GPT-2's (Keras' default is 1e-3)
  bool scale = true;   // parameter "gamma" [dim], ones
  bool center = true;  // parameter "beta" [dim], zeros
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// Normalises over the last axis, then gamma * x + beta (Keras' parameter names).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, const LayerNormOptions& options = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string describe() const override;
  const Tensor& gamma() const { return gamma_; }
  const Tensor& beta() const { return beta_; }

 private:
  int64_t dim_;
  double eps_;
  Tensor gamma_, beta_;
};

}  // namespace lowrank::nn
