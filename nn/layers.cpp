// Dense, Sequential, Flatten, activations, Dropout, Embedding, LayerNorm.
#include "nn/layers.h"

#include "core/ops.h"
#include "nn/functional.h"

namespace lowrank::nn {

Activation parse_activation(const std::string& name) {
  if (name.empty() || name == "linear" || name == "none") return Activation::Linear;
  if (name == "relu") return Activation::Relu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  LR_FAIL("activation: unknown name '{}' (expected linear, relu, gelu, tanh or sigmoid)", name);
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Linear:
      return "linear";
    case Activation::Relu:
      return "relu";
    case Activation::Gelu:
      return "gelu";
    case Activation::Tanh:
      return "tanh";
    case Activation::Sigmoid:
      return "sigmoid";
  }
  return "?";
}

Tensor apply_activation(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::Linear:
      return x;
    case Activation::Relu:
      return relu(x);
    case Activation::Gelu:
      return gelu(x);
    case Activation::Tanh:
      return tanh(x);
    case Activation::Sigmoid:
      return sigmoid(x);
  }
  return x;
}

// ---- Dense

Dense::Dense(int64_t in_features, int64_t units, const DenseOptions& o, Generator& gen)
    : in_(in_features), units_(units), activation_(o.activation) {
  LR_CHECK(in_features > 0 && units > 0, "Dense: in_features and units must be positive, got {} and {}", in_features,
           units);
  Fans fans{in_features, units};
  kernel_ = register_parameter("kernel", initialize(o.kernel_init, {units, in_features}, fans, gen, o.dtype, o.device));
  if (o.use_bias) bias_ = register_parameter("bias", initialize(o.bias_init, {units}, fans, gen, o.dtype, o.device));
}

Tensor Dense::forward(const Tensor& x) {
  LR_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_,
           "Dense: input {} does not end in in_features {} (kernel {})", x.defined() ? x.shape() : Shape{}, in_,
           kernel_.shape());
  if (activation_ == Activation::Relu) return linear(x, kernel_, bias_, true);
  return apply_activation(activation_, linear(x, kernel_, bias_));
}

std::string Dense::describe() const {
  return detail::format("Dense({} -> {}, {}{})", in_, units_, activation_name(activation_),
                        bias_.defined() ? "" : ", no bias");
}

// ---- Sequential

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& layers) {
  for (const auto& l : layers) add(l);
}

Sequential& Sequential::add(std::shared_ptr<Module> layer) {
  return add(std::to_string(size()), std::move(layer));
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> layer) {
  register_module(name, std::move(layer));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, layer] : children()) h = layer->forward(h);
  return h;
}

Module& Sequential::operator[](size_t i) const {
  LR_CHECK(i < size(), "Sequential: index {} out of range for {} layers", i, size());
  return *children()[i].second;
}

// ---- Flatten and activations

Tensor Flatten::forward(const Tensor& x) {
  LR_CHECK(x.defined() && x.dim() >= 1, "Flatten: needs a batch axis, got {}", x.defined() ? x.shape() : Shape{});
  if (x.dim() == 2) return x;
  return x.reshape({x.size(0), -1});
}

Tensor ReLU::forward(const Tensor& x) {
  return relu(x);
}
Tensor GELU::forward(const Tensor& x) {
  return gelu(x);
}

// ---- Dropout

Dropout::Dropout(double rate, uint64_t seed) : rate_(rate), gen_(seed) {
  LR_CHECK(rate >= 0.0 && rate < 1.0, "Dropout: rate must be in [0, 1), got {}", rate);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || rate_ == 0.0) return x;
  uint64_t offset = gen_.take(x.numel());
  return dropout(x, rate_, true, gen_.seed(), offset);
}

std::string Dropout::describe() const {
  return detail::format("Dropout({})", rate_);
}

// ---- Embedding

Embedding::Embedding(int64_t vocab, int64_t dim, const EmbeddingOptions& o, Generator& gen) : vocab_(vocab), dim_(dim) {
  LR_CHECK(vocab > 0 && dim > 0, "Embedding: vocab and dim must be positive, got {} and {}", vocab, dim);
  weight_ = register_parameter("embeddings",
                               initialize(o.init, {vocab, dim}, keras_fans({vocab, dim}), gen, o.dtype, o.device));
}

Tensor Embedding::forward(const Tensor& ids) {
  return embedding(weight_, ids);
}

std::string Embedding::describe() const {
  return detail::format("Embedding({}, {})", vocab_, dim_);
}

// ---- LayerNorm

LayerNorm::LayerNorm(int64_t dim, const LayerNormOptions& o) : dim_(dim), eps_(o.eps) {
  LR_CHECK(dim > 0, "LayerNorm: dim must be positive, got {}", dim);
  LR_CHECK(o.eps > 0, "LayerNorm: eps must be positive, got {}", o.eps);
  if (o.scale) gamma_ = register_parameter("gamma", Tensor::ones({dim}, o.dtype, o.device));
  if (o.center) beta_ = register_parameter("beta", Tensor::zeros({dim}, o.dtype, o.device));
}

Tensor LayerNorm::forward(const Tensor& x) {
  LR_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm: input {} does not end in dim {}",
           x.defined() ? x.shape() : Shape{}, dim_);
  return layer_norm(x, gamma_, beta_, eps_);
}

std::string LayerNorm::describe() const {
  return detail::format("LayerNorm({}, eps={})", dim_, eps_);
}

}  // namespace lowrank::nn
