// Optimizer base: parameter groups and their checks, the step counter and LR schedule, state
// save/load with checks on what is loaded.
#include "optim/optimizer.h"

#include <charconv>
#include <cmath>
#include <set>
#include <sstream>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "optim/finite.h"

namespace lowrank::optim {
namespace {

void check_rate(double lr, const std::string& who) {
  LR_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: {}learning rate must be finite and >= 0, got {}", who, lr);
}

}  // namespace

Optimizer::Optimizer(NamedParameters params, double lr, double weight_decay)
    : Optimizer(ParamGroups{ParamGroup{"default", std::move(params), std::nullopt, std::nullopt}}, lr, weight_decay) {}

Optimizer::Optimizer(ParamGroups groups, double lr, double weight_decay) : default_lr_(lr) {
  check_rate(lr, "");
  LR_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "optimizer: weight_decay must be >= 0, got {}",
           weight_decay);
  std::set<std::string> names, group_names;
  std::set<const TensorImpl*> impls;
  for (ParamGroup& g : groups) {
    LR_CHECK(group_names.insert(g.name).second, "optimizer: parameter group name '{}' appears twice", g.name);
    GroupInfo info{g.name, g.lr.value_or(lr), g.lr.has_value(), g.weight_decay.value_or(weight_decay), params_.size(),
                   0};
    check_rate(info.lr, "group '" + g.name + "': ");
    LR_CHECK(std::isfinite(info.weight_decay) && info.weight_decay >= 0,
             "optimizer: group '{}': weight_decay must be >= 0, got {}", g.name, info.weight_decay);
    for (auto& [name, p] : g.params) {
      LR_CHECK(!name.empty(), "optimizer: a parameter has an empty name");
      LR_CHECK(names.insert(name).second, "optimizer: parameter name '{}' appears twice", name);
      LR_CHECK(p.defined(), "optimizer: parameter '{}' is undefined", name);
      LR_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "optimizer: parameter '{}' is {} {}, not f32/f64",
               name, dtype_name(p.dtype()), p.shape());
      LR_CHECK(p.is_contiguous(), "optimizer: parameter '{}' {} is not contiguous", name, p.shape());
      LR_CHECK(impls.insert(p.impl()).second, "optimizer: parameter '{}' is the same tensor as an earlier one", name);
      params_.emplace_back(name, p);
    }
    info.end = params_.size();
    groups_.push_back(std::move(info));
  }
  state_.resize(params_.size());
}

void Optimizer::step() {
  NoGradGuard no_grad;
  const int64_t k = step_count_ + 1;
  std::vector<double> lrs(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) lrs[g] = lr(g);
  update(k, lrs);
  step_count_ = k;
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

double Optimizer::lr(size_t group) const {
  LR_CHECK(group < groups_.size(), "optimizer: no parameter group {} (it has {})", group, groups_.size());
  const GroupInfo& g = groups_[group];
  if (!schedule_) return g.lr;
  const double s = (*schedule_)(step_count_ + 1);
  if (!g.own_lr) return s;
  const double reference = default_lr_ > 0 ? default_lr_ : schedule_->peak_lr();
  return reference > 0 ? g.lr * (s / reference) : 0.0;
}

void Optimizer::set_lr(double lr) {
  check_rate(lr, "");
  default_lr_ = lr;
  for (GroupInfo& g : groups_) g.lr = lr, g.own_lr = false;
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

std::string Optimizer::number_text(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

void Optimizer::check_loaded_buffer(const std::string&, const std::string&, const Tensor&) const {}

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
      const Tensor& t = it->second;
      LR_CHECK(t.defined() && t.shape() == p.shape(),
               "{}: load_state_dict: '{}' has shape {} but parameter '{}' has {}", name(), key,
               t.defined() ? t.shape() : Shape{}, pname, p.shape());
      LR_CHECK(t.dtype() == p.dtype(), "{}: load_state_dict: '{}' is {} but parameter '{}' is {}", name(), key,
               dtype_name(t.dtype()), pname, dtype_name(p.dtype()));
      if (auto bad = first_non_finite(t))
        LR_FAIL("{}: load_state_dict: '{}' holds a NaN or infinite value (element {}); no run writes that", name(), key,
                *bad);
      check_loaded_buffer(buf, key, t);
      incoming[i][buf] = t;
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
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string key = "group." + std::to_string(g) + ".";
    md[key + "name"] = groups_[g].name;
    md[key + "lr"] = number_text(groups_[g].lr);
    md[key + "weight_decay"] = number_text(groups_[g].weight_decay);
    md[key + "params"] = std::to_string(groups_[g].end - groups_[g].begin);
  }
  md["optimizer"] = name();
  md["step"] = std::to_string(step_count_);
  if (schedule_) md["schedule"] = schedule_->str();
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
  try {
    load_state_dict(f.tensors, n);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());  // the file a bad tensor came from
  }
  return f.metadata;
}

}  // namespace lowrank::optim
