// Adam / AdamW: eager zero moments, one adam_step_ kernel call per parameter per step.
#include "optim/adam.h"

#include <cmath>

#include "core/dispatch.h"
#include "core/ops.h"
#include "optim/finite.h"

namespace lowrank::optim {
Adam::Adam(NamedParameters params, const AdamOptions& options)
    : Adam(ParamGroups{ParamGroup{"default", std::move(params), std::nullopt, std::nullopt}}, options, false) {}

Adam::Adam(ParamGroups groups, const AdamOptions& options) : Adam(std::move(groups), options, false) {}

Adam::Adam(ParamGroups groups, const AdamOptions& o, bool decoupled)
    : Optimizer(std::move(groups), o.lr, o.weight_decay), options_(o), decoupled_(decoupled) {
  const char* who = decoupled ? "AdamW" : "Adam";
  LR_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "{}: betas ({}, {}) must be in [0, 1)", who,
           o.beta1, o.beta2);
  LR_CHECK(std::isfinite(o.eps) && o.eps >= 0, "{}: eps must be >= 0, got {}", who, o.eps);
  LR_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "{}: weight_decay must be >= 0, got {}", who,
           o.weight_decay);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    state_[i]["exp_avg"] = Tensor::zeros(p.shape(), p.dtype(), p.device());
    state_[i]["exp_avg_sq"] = Tensor::zeros(p.shape(), p.dtype(), p.device());
  }
}

AdamW::AdamW(NamedParameters params, const AdamOptions& options)
    : Adam(ParamGroups{ParamGroup{"default", std::move(params), std::nullopt, std::nullopt}}, options, true) {}

AdamW::AdamW(ParamGroups groups, const AdamOptions& options) : Adam(std::move(groups), options, true) {}

void Adam::update(int64_t step, const std::vector<double>& lrs) {
  AdamArgs args;
  args.beta1 = options_.beta1;
  args.beta2 = options_.beta2;
  args.eps = options_.eps;
  args.step = step;
  args.decoupled = decoupled_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    args.lr = lrs[gi];
    args.weight_decay = groups_[gi].weight_decay;
    for (size_t i = groups_[gi].begin; i < groups_[gi].end; ++i) {
      const Tensor& p = params_[i].second;
      Tensor g = p.grad();
      if (!g.defined()) continue;
      adam_step_(p, g, state_[i].at("exp_avg"), state_[i].at("exp_avg_sq"), args);
    }
  }
}

void Adam::check_loaded_buffer(const std::string& buffer, const std::string& key, const Tensor& t) const {
  if (buffer != "exp_avg_sq") return;
  if (auto at = first_negative(t))
    LR_FAIL("{}: load_state_dict: '{}' has a negative entry (element {}); a mean of squares never is", name(), key,
            *at);
}

std::map<std::string, std::string> Adam::hyperparameters() const {
  return {{"lr", number_text(options_.lr)},
          {"beta1", number_text(options_.beta1)},
          {"beta2", number_text(options_.beta2)},
          {"eps", number_text(options_.eps)},
          {"weight_decay", number_text(options_.weight_decay)}};
}

}  // namespace lowrank::optim
