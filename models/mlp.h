// The users' Fashion-MNIST MLP: Flatten -> Dense(128, relu) -> Dense(128, relu) -> Dense(10)
// logits, with parameter names that stay stable for LoRA experiments to address.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/generator.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace lowrank::models {

struct MlpConfig {
  int64_t inputs = 784;                      // 28 x 28 pixels
  std::vector<int64_t> hidden = {128, 128};  // relu layers
  int64_t classes = 10;
  nn::Init kernel_init = nn::Init::glorot_uniform();  // Keras' default, as in the users' notes
  nn::Init bias_init = nn::Init::zeros();
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// Parameter names with the default config (kernels are [out, in], see nn::Dense):
//   layers.1.kernel [128, 784]  layers.1.bias [128]
//   layers.2.kernel [128, 128]  layers.2.bias [128]   <- kMlpHiddenLayer, the LoRA target
//   layers.3.kernel [10, 128]   layers.3.bias [10]
// layers.0 is the Flatten; Dense i (0-based) is layers.{i + 1}.
inline constexpr const char* kMlpHiddenLayer = "layers.2";

class Mlp : public nn::Module {
 public:
  explicit Mlp(const MlpConfig& config = {}, nn::Generator& gen = nn::default_generator());
  // x [N, 28, 28] or [N, 784] (any shape whose trailing axes hold `inputs` values), pixels in
  // [0, 1] -> logits [N, classes].
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Mlp"; }
  std::string describe() const override;

  nn::Sequential& layers() const { return *layers_; }
  const MlpConfig& config() const { return config_; }
  size_t num_dense() const { return config_.hidden.size() + 1; }
  // The path of Dense layer i ("layers.{i + 1}").
  static std::string dense_path(size_t i);

 private:
  MlpConfig config_;
  std::shared_ptr<nn::Sequential> layers_;
};

}  // namespace lowrank::models
