// SGD written with framework ops, so it runs on every backend; the operation order follows
// torch.optim.SGD's single-tensor path.
#include "optim/sgd.h"

#include <cmath>

#include "core/ops.h"

namespace lowrank::optim {

SGD::SGD(NamedParameters params, const SgdOptions& options)
    : SGD(ParamGroups{ParamGroup{"default", std::move(params), std::nullopt, std::nullopt}}, options) {}

SGD::SGD(ParamGroups groups, const SgdOptions& o) : Optimizer(std::move(groups), o.lr, o.weight_decay), options_(o) {
  LR_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, "SGD: momentum must be >= 0, got {}", o.momentum);
  LR_CHECK(std::isfinite(o.dampening), "SGD: dampening must be finite, got {}", o.dampening);
  LR_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0, "SGD: weight_decay must be >= 0, got {}",
           o.weight_decay);
  LR_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
           "SGD: Nesterov momentum needs momentum > 0 and dampening 0, got momentum {} dampening {}", o.momentum,
           o.dampening);
}

void SGD::update(int64_t, const std::vector<double>& lrs) {
  const SgdOptions& o = options_;
  for (size_t i = 0, gi = 0; i < params_.size(); ++i) {
    while (i >= groups_[gi].end) ++gi;
    const double lr = lrs[gi], weight_decay = groups_[gi].weight_decay;
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    LR_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype(), "SGD: parameter '{}' is {} {} but its gradient is {} {}",
             params_[i].first, dtype_name(p.dtype()), p.shape(), dtype_name(g.dtype()), g.shape());
    Tensor d = weight_decay != 0 ? add(g, mul(p, weight_decay)) : g;
    if (o.momentum != 0) {
      auto it = state_[i].find("momentum_buffer");
      if (it == state_[i].end()) {
        state_[i]["momentum_buffer"] = d.clone();  // never aliases the gradient
      } else {
        Tensor& buf = it->second;
        buf.copy_(add(mul(buf, o.momentum), mul(d, 1.0 - o.dampening)));
      }
      const Tensor& buf = state_[i].at("momentum_buffer");
      d = o.nesterov ? add(d, mul(buf, o.momentum)) : buf;
    }
    p.copy_(add(p, mul(d, -lr)));
  }
}

std::map<std::string, std::string> SGD::hyperparameters() const {
  return {{"lr", number_text(options_.lr)},
          {"momentum", number_text(options_.momentum)},
          {"dampening", number_text(options_.dampening)},
          {"weight_decay", number_text(options_.weight_decay)},
          {"nesterov", options_.nesterov ? "true" : "false"}};
}

}  // namespace lowrank::optim
