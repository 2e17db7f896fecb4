// EinsumDense with Keras semantics: y = activation(einsum(equation, x, kernel) + bias), the
// kernel's shape derived from the equation, the input shape and `output_shape` as Keras does.
#pragma once
#include <cstdint>
#include <string>

#include "nn/generator.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace lowrank::nn {

// What Keras' _analyze_einsum_string derives, with any "..." already expanded into letters.
struct EinsumDenseShapes {
  std::string equation;  // expanded, e.g. "abc,cde->abde"
  std::string input_spec, kernel_spec, output_spec;
  Shape kernel;  // every axis known
  Shape bias;    // empty without bias_axes; otherwise aligned with the output's trailing axes
  Shape output;  // with the batch axis; -1 where the size follows the input at run time
};

// `equation` is "[X],[Y]->[Z]", "...[X],[Y]->...[Z]" or "[X]...,[Y]->[Z]..." (letters a-z, A-Z);
// `input_shape` is the full input shape with its batch axis (-1 for a size the kernel does not
// depend on, e.g. the batch or sequence length); `output_shape` excludes the batch axis and the
// elided axes, as in Keras (-1 where unknown). Invalid input throws a message naming the
// equation and the problem.
EinsumDenseShapes analyze_einsum_dense(const std::string& equation, const Shape& input_shape, const Shape& output_shape,
                                       const std::string& bias_axes = "");

struct EinsumDenseOptions {
  std::string bias_axes;  // output letters that get a bias; empty: no bias
  Activation activation = Activation::Linear;
  Init kernel_init = Init::glorot_uniform();  // fans by Keras' rule on the kernel's shape
  Init bias_init = Init::zeros();
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// Keras builds lazily from the first input; here the input shape is given up front so that the
// parameters exist before an optimizer or a LoRA wrapper looks at them. Parameters: "kernel"
// (shape from the equation) and, with bias_axes, "bias".
class EinsumDense : public Module {
 public:
  EinsumDense(const std::string& equation, const Shape& output_shape, const Shape& input_shape,
              const EinsumDenseOptions& options = {}, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "EinsumDense"; }
  std::string describe() const override;

  const Tensor& kernel() const { return kernel_; }
  const Tensor& bias() const { return bias_; }
  const EinsumDenseShapes& shapes() const { return shapes_; }
  const std::string& equation() const { return equation_; }  // as given (before expansion)
  Activation activation() const { return activation_; }

 private:
  std::string equation_;
  EinsumDenseShapes shapes_;
  Activation activation_;
  Tensor kernel_, bias_;
};

}  // namespace lowrank::nn
