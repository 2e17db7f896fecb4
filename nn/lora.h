// LoRA adapters (Hu et al. 2021) around a Dense or an EinsumDense, in PEFT's layout and names:
// y = act(base_scale·(x Wᵀ) + b + scale·B(A(x))) with A [r, in], B [out, r] stored as plain
// weights "lora_A.weight" and "lora_B.weight" beside the frozen "base_layer".
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/einsum_dense.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace lowrank::nn {

enum class LoraInit : uint8_t {
  Kaiming,   // A kaiming-uniform (a = sqrt(5)), B zeros: the paper's and PEFT's default
  Gaussian,  // A ~ N(0, 1/r²), B zeros (PEFT's "gaussian")
  Pissa,     // A, B from the top-r SVD of W; the base keeps the residual (PEFT's "pissa")
};
LoraInit parse_lora_init(const std::string& name);  // "kaiming" (or "default"), "gaussian", "pissa"
const char* lora_init_name(LoraInit i);

// The factor on the frozen kernel as a function of the optimizer step: constant (the 0.9
// experiment), or linear / cosine from `start` to `target` over `steps` steps, then `target`
// (the "penalty on the original weight"; target 0 leaves a pure rank-r layer).
struct BaseScaleSchedule {
  enum class Kind : uint8_t { Constant, Linear, Cosine };
  Kind kind = Kind::Constant;
  double start = 1.0;
  double target = 1.0;
  int64_t steps = 0;

  static BaseScaleSchedule constant(double v) { return {Kind::Constant, v, v, 0}; }
  double at(int64_t step) const;
  std::string name() const;  // "constant", "linear", "cosine"
  static Kind parse_kind(const std::string& name);
};

struct LoraConfig {
  int64_t r = 8;
  double alpha = 8.0;       // PEFT's lora_alpha
  bool use_rslora = false;  // scale = alpha / sqrt(r) instead of alpha / r
  double dropout = 0.0;     // on the adapter's input, training mode only
  LoraInit init = LoraInit::Kaiming;
  BaseScaleSchedule base_scale;
  uint64_t seed = 0;  // the adapter's own Philox stream (init and dropout masks)

  double scale() const;
};

class LoRA : public Module {
 public:
  LoRA(std::shared_ptr<Dense> base, const LoraConfig& config);
  LoRA(std::shared_ptr<EinsumDense> base, const LoraConfig& config);

  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LoRA"; }
  std::string describe() const override;

  const LoraConfig& config() const { return config_; }
  double scale() const { return config_.scale(); }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  // The schedule's value now; advance() moves it one optimizer step on.
  double base_scale() const { return config_.base_scale.at(step_); }
  int64_t schedule_step() const { return step_; }
  void advance(int64_t steps = 1) { step_ += steps; }
  void set_schedule_step(int64_t step) { step_ = step; }
  // The adapter's own Philox stream (init, then dropout masks): save and restore it to replay a run.
  Generator& generator() { return gen_; }

  const Tensor& lora_A() const { return a_; }  // [r, in]
  const Tensor& lora_B() const { return b_; }  // [out, r]
  Module& base() const { return *base_; }
  const std::shared_ptr<Module>& base_ptr() const { return base_; }
  // The frozen kernel as a matrix [out, in] (a view for Dense; a copy for EinsumDense).
  Tensor base_weight() const;
  // scale · B A, [out, in]: what the adapter adds to base_scale · W.
  Tensor delta_weight() const;

  // Folds the adapter into the kernel (W ← base_scale·W + scale·BA, forward then uses the
  // kernel alone); unmerge() puts back the exact original kernel.
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

  // PEFT's file layout: {"<prefix>.lora_A.weight", "<prefix>.lora_B.weight"}.
  std::map<std::string, Tensor> adapter_state(const std::string& prefix) const;
  // Loads A and B from `state` (names as adapter_state gives them); a missing name or a shape
  // that does not fit this layer is refused naming the tensor and both shapes.
  void load_adapter_state(const std::map<std::string, Tensor>& state, const std::string& prefix);

 private:
  void init_adapter(const Tensor& w_mat);
  Tensor einsum_adapter_input(const Tensor& x) const;

  std::shared_ptr<Module> base_;
  Dense* dense_ = nullptr;
  EinsumDense* einsum_ = nullptr;
  LoraConfig config_;
  int64_t in_ = 0, out_ = 0;
  size_t n_contracted_ = 0;  // EinsumDense: kernel axes contracted with the input
  int64_t step_ = 0;
  bool merged_ = false;
  Tensor saved_kernel_;  // the original kernel while merged
  Tensor a_, b_;
  Generator gen_;
};

// Wraps the Dense or EinsumDense at `path` inside `model` with a LoRA adapter, freezes the rest
// of the model except the adapters injected before (as PEFT does), and returns the adapter.
// Throws naming the path when it is neither.
std::shared_ptr<LoRA> inject_lora(Module& model, const std::string& path, const LoraConfig& config);

// PEFT's merge_and_unload(): folds every adapter in `model` into its layer (W ← base_scale·W +
// scale·BA, see LoRA::merge) and puts the plain layer back where the adapter was, so the model has
// its original parameter names again and saves as a plain model. The layers keep their
// requires_grad (a base frozen for LoRA stays frozen). Returns the number of adapters folded.
int64_t merge_and_unload(Module& model);

// adapter_config.json in PEFT's keys (r, lora_alpha, target_modules, use_rslora,
// init_lora_weights, lora_dropout) plus base_scale and its schedule.
std::string lora_adapter_config_json(const LoraConfig& config, const std::vector<std::string>& target_modules);
// Writes `dir`/adapter_model.safetensors and `dir`/adapter_config.json (atomically).
void save_lora_adapter(const std::string& dir, const std::vector<std::pair<std::string, const LoRA*>>& adapters);

}  // namespace lowrank::nn
