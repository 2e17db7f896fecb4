// SGD with momentum, dampening, weight decay and Nesterov momentum, as torch.optim.SGD.
#pragma once
#include "optim/optimizer.h"

namespace lowrank::optim {

struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2, added to the gradient
  bool nesterov = false;      // needs momentum > 0 and dampening == 0, as in torch
};

class SGD : public Optimizer {
 public:
  explicit SGD(NamedParameters params, const SgdOptions& options = {});
  // Groups take lr and weight_decay from `options` unless they set their own.
  SGD(ParamGroups groups, const SgdOptions& options);
  const char* name() const override { return "sgd"; }
  const SgdOptions& options() const { return options_; }

 protected:
  void update(int64_t step, const std::vector<double>& lrs) override;
  // The momentum buffer starts as a copy of the first gradient, so it exists only after a
  // parameter's first update (and never without momentum).
  std::vector<std::string> buffer_names() const override { return {"momentum_buffer"}; }
  bool buffers_required() const override { return false; }
  std::map<std::string, std::string> hyperparameters() const override;

 private:
  SgdOptions options_;
};

}  // namespace lowrank::optim
