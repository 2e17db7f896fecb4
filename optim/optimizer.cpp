// Optimizer base: parameter checks, the step counter and LR schedule, state save/load.
#include "optim/optimizer.h"

#include <charconv>
#include <cmath>
#include <set>

#include "core/autograd.h"
#include "core/io/safetensors.h"

namespace lowrank::optim {

Optimizer::Optimizer(NamedParameters params, double lr) : params_(std::move(params)), lr_(lr) {
  LR_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got {}", lr);
  std::set<std::string> names;
  std::set<const TensorImpl*> impls;
  for (const auto& [name, p] : params_) {
    LR_CHECK(!name.empty(), "optimizer: a parameter has an empty name");
    LR_CHECK(names.insert(name).second, "optimizer: parameter name '{}' appears twice", name);
    LR_CHECK(p.defined(), "optimizer: parameter '{}' is undefined", name);
    LR_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "optimizer: parameter '{}' is {} {}, not f32/f64",
             name, dtype_name(p.dtype()), p.shape());
    LR_CHECK(p.is_contiguous(), "optimizer: parameter '{}' {} is not contiguous", name, p.shape());
    LR_CHECK(impls.insert(p.impl()).second, "optimizer: parameter '{}' is the same tensor as an earlier one", name);
  }
  state_.resize(params_.size());
}

void Optimizer::step() {
  NoGradGuard no_grad;
  int64_t k = step_count_ + 1;
  update(k, schedule_ ? (*schedule_)(k) : lr_);
  step_count_ = k;
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

double Optimizer::lr() const {
  return schedule_ ? (*schedule_)(step_count_ + 1) : lr_;
}

void Optimizer::set_lr(double lr) {
  LR_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got {}", lr);
  lr_ = lr;
  schedule_.reset();
}

void Optimizer::set_schedule(const LrSchedule& schedule) {
  schedule_ = schedule;
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    for (const auto& [buf, t] : state_[i]) out.emplace(params_[i].first + "." + buf, t);
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state, int64_t step_count) {
  LR_CHECK(step_count >= 0, "{}: load_state_dict: negative step count {}", name(), step_count);
  NoGradGuard no_grad;
  // Check everything first so a bad state leaves the optimizer as it was.
  size_t used = 0;
  std::vector<std::map<std::string, Tensor>> incoming(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    for (const std::string& buf : buffer_names()) {
      std::string key = pname + "." + buf;
      auto it = state.find(key);
      if (it == state.end()) {
        LR_CHECK(!buffers_required(), "{}: load_state_dict: the state has no '{}'", name(), key);
        continue;
      }
      LR_CHECK(it->second.defined() && it->second.shape() == p.shape(),
               "{}: load_state_dict: '{}' has shape {} but parameter '{}' has {}", name(), key,
               it->second.defined() ? it->second.shape() : Shape{}, pname, p.shape());
      LR_CHECK(it->second.dtype() == p.dtype(), "{}: load_state_dict: '{}' is {} but parameter '{}' is {}", name(), key,
               dtype_name(it->second.dtype()), pname, dtype_name(p.dtype()));
      incoming[i][buf] = it->second;
      ++used;
    }
  }
  if (used != state.size()) {
    std::set<std::string> known;
    for (const auto& [pname, p] : params_)
      for (const std::string& buf : buffer_names()) known.insert(pname + "." + buf);
    for (const auto& [key, t] : state)
      LR_CHECK(known.count(key), "{}: load_state_dict: '{}' belongs to no parameter of this optimizer", name(), key);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    if (!buffers_required()) state_[i].clear();
    for (const auto& [buf, t] : incoming[i]) {
      Tensor& dst = state_[i][buf];
      if (!dst.defined()) dst = Tensor::zeros(p.shape(), p.dtype(), p.device());
      dst.copy_(t);
    }
  }
  step_count_ = step_count;
}

void Optimizer::save(const std::string& path, const std::map<std::string, std::string>& extra) const {
  std::map<std::string, std::string> md = extra;
  for (const auto& [k, v] : hyperparameters()) md[k] = v;
  md["optimizer"] = name();
  md["step"] = std::to_string(step_count_);
  io::save_safetensors(path, state_dict(), md);
}

std::map<std::string, std::string> Optimizer::load(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  auto kind = f.metadata.find("optimizer");
  LR_CHECK(kind != f.metadata.end(), "{}: {} has no 'optimizer' metadata (not an optimizer state file?)", name(), path);
  LR_CHECK(kind->second == name(), "{}: {} holds the state of a '{}' optimizer", name(), path, kind->second);
  auto step = f.metadata.find("step");
  LR_CHECK(step != f.metadata.end(), "{}: {} has no 'step' metadata", name(), path);
  int64_t n = -1;
  const std::string& s = step->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  LR_CHECK(ec == std::errc() && end == s.data() + s.size() && n >= 0, "{}: {}: step '{}' is not a count", name(), path,
           s);
  load_state_dict(f.tensors, n);
  return f.metadata;
}

}  // namespace lowrank::optim
