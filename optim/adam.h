// Adam (Kingma & Ba) with L2 weight decay, as torch.optim.Adam, and AdamW (Loshchilov & Hutter)
// with decoupled decay, as torch.optim.AdamW. Each parameter's update is one fused kernel
// (Backend::adam_step): bias-corrected, p -= lr * m_hat / (sqrt(v_hat) + eps).
#pragma once
#include "optim/optimizer.h"

namespace lowrank::optim {

inline constexpr double kKerasAdamEps = 1e-7;  // tf.keras.optimizers.Adam's default epsilon
inline constexpr double kTorchAdamEps = 1e-8;  // torch.optim.Adam's default eps

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = kTorchAdamEps;
  // Adam: added to the gradient (L2). AdamW: p *= 1 - lr * weight_decay before the update.
  double weight_decay = 0.0;
};

class Adam : public Optimizer {
 public:
  explicit Adam(NamedParameters params, const AdamOptions& options = {});
  // Groups take lr and weight_decay from `options` unless they set their own.
  Adam(ParamGroups groups, const AdamOptions& options);
  const char* name() const override { return "adam"; }
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(ParamGroups groups, const AdamOptions& options, bool decoupled);
  void update(int64_t step, const std::vector<double>& lrs) override;
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool buffers_required() const override { return true; }
  std::map<std::string, std::string> hyperparameters() const override;
  // exp_avg_sq is a running mean of squares: a negative entry would make sqrt(v) NaN.
  void check_loaded_buffer(const std::string& buffer, const std::string& key, const Tensor& t) const override;

 private:
  AdamOptions options_;
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  // torch.optim.AdamW's default weight decay is 1e-2.
  explicit AdamW(NamedParameters params, const AdamOptions& options = {.weight_decay = 1e-2});
  AdamW(ParamGroups groups, const AdamOptions& options);
  const char* name() const override { return "adamw"; }
};

}  // namespace lowrank::optim
