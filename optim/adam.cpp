// Adam / AdamW: eager zero moments, one adam_step_ kernel call per parameter per step.
#include "optim/adam.h"

#include <cmath>
#include <sstream>

#include "core/dispatch.h"
#include "core/ops.h"

namespace lowrank::optim {
namespace {

std::string num(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

Adam::Adam(NamedParameters params, const AdamOptions& options) : Adam(std::move(params), options, false) {}

Adam::Adam(NamedParameters params, const AdamOptions& o, bool decoupled)
    : Optimizer(std::move(params), o.lr), options_(o), decoupled_(decoupled) {
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

AdamW::AdamW(NamedParameters params, const AdamOptions& options) : Adam(std::move(params), options, true) {}

void Adam::update(int64_t step, double lr) {
  AdamArgs args;
  args.lr = lr;
  args.beta1 = options_.beta1;
  args.beta2 = options_.beta2;
  args.eps = options_.eps;
  args.weight_decay = options_.weight_decay;
  args.step = step;
  args.decoupled = decoupled_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    adam_step_(p, g, state_[i].at("exp_avg"), state_[i].at("exp_avg_sq"), args);
  }
}

std::map<std::string, std::string> Adam::hyperparameters() const {
  return {{"lr", num(options_.lr)},
          {"beta1", num(options_.beta1)},
          {"beta2", num(options_.beta2)},
          {"eps", num(options_.eps)},
          {"weight_decay", num(options_.weight_decay)}};
}

}  // namespace lowrank::optim
