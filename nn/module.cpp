// Module: registry of parameters, buffers and submodules; state dicts; modes; device moves.
#include "nn/module.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "core/autograd.h"
#include "core/io/safetensors.h"

namespace lowrank::nn {
namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Points `t`'s TensorImpl at `moved`'s storage and layout, keeping its identity and requires_grad.
void swap_storage(const Tensor& t, const Tensor& moved) {
  TensorImpl* impl = t.impl();
  impl->storage = moved.storage();
  impl->shape = moved.shape();
  impl->strides = moved.strides();
  impl->offset = moved.offset();
  impl->dtype = moved.dtype();
  impl->grad.reset();
}

}  // namespace

Tensor Module::forward(const Tensor&) {
  LR_FAIL("{}: this module has no single-input forward", type_name());
}

void Module::check_new_name(const std::string& name) const {
  LR_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "{}: a parameter, buffer or submodule name must be non-empty and dot-free, got '{}'", type_name(), name);
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& p) { return p.first == name; });
  };
  LR_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "{}: the name '{}' is already registered",
           type_name(), name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool trainable) {
  check_new_name(name);
  LR_CHECK(t.defined(), "{}: parameter '{}' is undefined", type_name(), name);
  LR_CHECK(is_floating(t.dtype()), "{}: parameter '{}' must be floating, got {}", type_name(), name,
           dtype_name(t.dtype()));
  t.requires_grad_(trainable);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  LR_CHECK(t.defined(), "{}: buffer '{}' is undefined", type_name(), name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  LR_CHECK(m != nullptr, "{}: submodule '{}' is null", type_name(), name);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, NamedTensors& params, NamedTensors* buffers) const {
  for (const auto& [n, t] : params_) params.emplace_back(join(prefix, n), t);
  if (buffers)
    for (const auto& [n, t] : buffers_) buffers->emplace_back(join(prefix, n), t);
  for (const auto& [n, c] : children_) c->collect(join(prefix, n), params, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out, nullptr);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::trainable_parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_trainable_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_trainable_parameters() const {
  NamedTensors out;
  for (auto& [n, t] : named_parameters())
    if (t.requires_grad()) out.emplace_back(n, t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors params, buffers;
  collect("", params, &buffers);
  return buffers;
}

Tensor Module::parameter(const std::string& path) const {
  for (auto& [n, t] : named_parameters())
    if (n == path) return t;
  LR_FAIL("{}: no parameter named '{}'", type_name(), path);
}

ParameterCount Module::parameter_count() const {
  ParameterCount c;
  for (auto& [n, t] : named_parameters()) {
    c.total += t.numel();
    if (t.requires_grad()) c.trainable += t.numel();
  }
  return c;
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

std::map<std::string, Tensor> Module::state_dict() const {
  NamedTensors params, buffers;
  collect("", params, &buffers);
  std::map<std::string, Tensor> out;
  for (auto& [n, t] : params) out.emplace(n, t.detach());
  for (auto& [n, t] : buffers) out.emplace(n, t.detach());
  return out;
}

namespace {

// The row-major index of the first NaN/Inf of a float tensor, or -1. Loaded weights are checked
// once, on the host: a NaN in a file would otherwise train on silently (the loss can stay finite).
template <class T>
int64_t first_non_finite_on_host(const Tensor& t) {
  const T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

int64_t first_non_finite_loaded(const Tensor& state) {
  Tensor t = state.device().is_cpu() ? state.contiguous() : state.to(Device::cpu()).contiguous();
  if (t.dtype() == DType::F32) return first_non_finite_on_host<float>(t);
  if (t.dtype() == DType::F64) return first_non_finite_on_host<double>(t);
  return -1;
}

constexpr size_t kMaxListedProblems = 12;  // a model with 5000 missing layers needs the count, not the list

}  // namespace

LoadReport Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  NamedTensors params, buffers;
  collect("", params, &buffers);
  params.insert(params.end(), buffers.begin(), buffers.end());
  LoadReport report;
  std::vector<std::string> problems;
  std::set<std::string> known;
  for (const auto& [name, t] : params) {
    known.insert(name);
    auto it = state.find(name);
    if (it == state.end()) {
      report.missing.push_back(name);
      if (strict) problems.push_back(detail::format("missing tensor '{}' (model shape {})", name, t.shape()));
    } else if (!it->second.defined() || it->second.shape() != t.shape()) {
      problems.push_back(detail::format("tensor '{}' has shape {} in the model but {} in the state", name, t.shape(),
                                        it->second.defined() ? shape_str(it->second.shape()) : "undefined"));
    } else if (is_floating(t.dtype()) && !is_floating(it->second.dtype())) {
      // Integers converted into weights are garbage that trains: refuse them by name.
      problems.push_back(detail::format("tensor '{}' is {} in the state; weights must be f16, bf16, f32 or f64", name,
                                        dtype_name(it->second.dtype())));
    } else if (is_floating(t.dtype())) {
      if (int64_t at = first_non_finite_loaded(it->second); at >= 0)
        problems.push_back(detail::format("tensor '{}' holds a NaN or infinite value (element {})", name, at));
    }
  }
  for (const auto& [name, t] : state) {
    if (known.count(name)) continue;
    report.unexpected.push_back(name);
    if (strict) problems.push_back(detail::format("unexpected tensor '{}' (shape {})", name, t.shape()));
  }
  if (!problems.empty()) {
    std::string msg = detail::format("{} problem{}: ", problems.size(), problems.size() == 1 ? "" : "s");
    for (size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > kMaxListedProblems)
      msg += detail::format("; and {} more", problems.size() - kMaxListedProblems);
    LR_FAIL("load_state_dict ({}): {}", type_name(), msg);
  }
  NoGradGuard no_grad;
  for (const auto& [name, t] : params) {
    auto it = state.find(name);
    if (it == state.end()) continue;
    Tensor dst = t.detach();
    dst.copy_(it->second);
  }
  return report;
}

void Module::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  io::save_safetensors(path, state_dict(), metadata);
}

std::map<std::string, std::string> Module::load(const std::string& path, bool strict) {
  io::SafetensorsFile f = io::load_safetensors(path);
  try {
    load_state_dict(f.tensors, strict);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return f.metadata;
}

void Module::train(bool on) {
  training_ = on;
  on_mode_change();
  for (auto& [n, c] : children_) c->train(on);
}

void Module::freeze() {
  for (auto& [n, t] : named_parameters()) {
    Tensor h = t;
    h.requires_grad_(false);
    h.zero_grad();
  }
}

void Module::unfreeze() {
  for (auto& [n, t] : named_parameters()) {
    Tensor h = t;
    h.requires_grad_(true);
  }
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  NamedTensors params, buffers;
  collect("", params, &buffers);
  params.insert(params.end(), buffers.begin(), buffers.end());
  for (auto& [n, t] : params)
    if (!(t.device() == device)) swap_storage(t, t.detach().to(device));
}

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  NamedTensors params, buffers;
  collect("", params, &buffers);
  for (auto& [n, t] : params)
    if (t.dtype() != dtype) swap_storage(t, t.detach().to(dtype));
  // Integer buffers (ids, masks) keep their type; floating ones follow the parameters.
  for (auto& [n, t] : buffers)
    if (is_floating(t.dtype()) && t.dtype() != dtype) swap_storage(t, t.detach().to(dtype));
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [n, c] : children_) {
    out.emplace_back(n, c.get());
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(join(n, sub), m);
  }
  return out;
}

Module& Module::child(const std::string& name) const {
  for (const auto& [n, c] : children_)
    if (n == name) return *c;
  LR_FAIL("{}: no submodule named '{}'", type_name(), name);
}

std::shared_ptr<Module> Module::submodule_ptr(const std::string& path) const {
  LR_CHECK(!path.empty(), "{}: empty submodule path", type_name());
  const Module* at = this;
  std::shared_ptr<Module> found;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    found.reset();
    for (const auto& [n, c] : at->children_)
      if (n == part) found = c;
    LR_CHECK(found != nullptr, "{}: no submodule at '{}' ('{}' not found)", type_name(), path, part);
    if (dot == std::string::npos) return found;
    at = found.get();
    start = dot + 1;
  }
}

Module& Module::submodule(const std::string& path) const {
  return *submodule_ptr(path);
}

void Module::replace_submodule(const std::string& path, std::shared_ptr<Module> replacement) {
  LR_CHECK(replacement != nullptr, "{}: replacement for '{}' is null", type_name(), path);
  size_t dot = path.rfind('.');
  Module* parent = this;
  std::string leaf = path;
  if (dot != std::string::npos) {
    parent = &submodule(path.substr(0, dot));
    leaf = path.substr(dot + 1);
  }
  for (auto& [n, c] : parent->children_)
    if (n == leaf) {
      c = std::move(replacement);
      return;
    }
  LR_FAIL("{}: no submodule at '{}' to replace", type_name(), path);
}

std::string Module::summary() const {
  std::ostringstream os;
  auto row = [&](const std::string& name, const std::string& what, int64_t count) {
    std::string n = name.empty() ? "(root)" : name;
    os << n << std::string(n.size() < 24 ? 24 - n.size() : 1, ' ') << what
       << std::string(what.size() < 40 ? 40 - what.size() : 1, ' ') << count << '\n';
  };
  auto own = [](const Module& m) {
    int64_t c = 0;
    for (auto& [n, t] : m.params_) c += t.numel();
    return c;
  };
  os << "name                    layer                                   params\n";
  row("", describe(), own(*this));
  for (auto& [n, m] : named_modules()) row(n, m->describe(), own(*m));
  ParameterCount pc = parameter_count();
  os << "total params: " << pc.total << " (trainable " << pc.trainable << ", frozen " << pc.total - pc.trainable
     << ")\n";
  return os.str();
}

}  // namespace lowrank::nn
