// LoRA around Dense (through the fused lora_linear op) and EinsumDense (contracted input axes
// flattened to `in`, the kernel's own output axes to `out`), with PEFT's init options, the
// base-scale schedule, merge/unmerge and adapter files.
#include "nn/lora.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "nn/init.h"

namespace lowrank::nn {
namespace {

// A child module holding one parameter named "weight", so names read "<path>.lora_A.weight".
class LoraWeight : public Module {
 public:
  explicit LoraWeight(Tensor w) { weight_ = register_parameter("weight", std::move(w)); }
  std::string type_name() const override { return "LoraWeight"; }
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

// For an EinsumDense equation: the kernel letters contracted with the input, then the kernel's
// own output letters. LoRA needs kernel = contracted + own, the input ending in the contracted
// letters and the output ending in the own letters (Keras' `abc,cde->abde`, `abcd,cde->abe`).
struct EinsumSplit {
  size_t n_contracted = 0;
  int64_t in = 1, out = 1;
};

EinsumSplit split_einsum(const EinsumDenseShapes& s, const std::string& eq) {
  EinsumSplit r;
  const std::string &in = s.input_spec, &k = s.kernel_spec, &out = s.output_spec;
  while (r.n_contracted < k.size() && in.find(k[r.n_contracted]) != std::string::npos) ++r.n_contracted;
  const std::string contracted = k.substr(0, r.n_contracted), own = k.substr(r.n_contracted);
  bool ok = !contracted.empty() && !own.empty() && in.ends_with(contracted) && out.ends_with(own) &&
            in.substr(0, in.size() - contracted.size()) == out.substr(0, out.size() - own.size());
  for (char c : contracted) ok = ok && out.find(c) == std::string::npos;
  for (char c : own) ok = ok && in.find(c) == std::string::npos;
  LR_CHECK(ok,
           "LoRA: EinsumDense equation '{}' is not supported: the kernel must list the input's trailing (contracted) "
           "axes, then the output's trailing axes, as in 'abc,cde->abde' or 'abcd,cde->abe'",
           eq);
  for (size_t i = 0; i < k.size(); ++i) (i < r.n_contracted ? r.in : r.out) *= s.kernel[i];
  return r;
}

}  // namespace

// ---- options

LoraInit parse_lora_init(const std::string& name) {
  if (name == "kaiming" || name == "default" || name == "true") return LoraInit::Kaiming;
  if (name == "gaussian") return LoraInit::Gaussian;
  if (name == "pissa") return LoraInit::Pissa;
  LR_FAIL("LoRA: unknown init '{}' (expected kaiming, gaussian or pissa)", name);
}

const char* lora_init_name(LoraInit i) {
  switch (i) {
    case LoraInit::Kaiming:
      return "kaiming";
    case LoraInit::Gaussian:
      return "gaussian";
    case LoraInit::Pissa:
      return "pissa";
  }
  return "?";
}

double BaseScaleSchedule::at(int64_t step) const {
  if (kind == Kind::Constant || steps <= 0) return kind == Kind::Constant ? start : target;
  if (step >= steps) return target;
  const double t = static_cast<double>(std::max<int64_t>(step, 0)) / static_cast<double>(steps);
  const double w = kind == Kind::Linear ? t : 0.5 * (1.0 - std::cos(std::numbers::pi * t));
  return start + (target - start) * w;
}

std::string BaseScaleSchedule::name() const {
  return kind == Kind::Constant ? "constant" : kind == Kind::Linear ? "linear" : "cosine";
}

BaseScaleSchedule::Kind BaseScaleSchedule::parse_kind(const std::string& name) {
  if (name == "constant") return Kind::Constant;
  if (name == "linear") return Kind::Linear;
  if (name == "cosine") return Kind::Cosine;
  LR_FAIL("LoRA: unknown base-scale schedule '{}' (expected constant, linear or cosine)", name);
}

double LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

// ---- the layer

LoRA::LoRA(std::shared_ptr<Dense> base, const LoraConfig& config)
    : base_(base), dense_(base.get()), config_(config), gen_(config.seed) {
  LR_CHECK(base != nullptr, "LoRA: no base layer");
  in_ = base->in_features(), out_ = base->units();
  init_adapter(base->kernel());
}

LoRA::LoRA(std::shared_ptr<EinsumDense> base, const LoraConfig& config)
    : base_(base), einsum_(base.get()), config_(config), gen_(config.seed) {
  LR_CHECK(base != nullptr, "LoRA: no base layer");
  EinsumSplit sp = split_einsum(base->shapes(), base->equation());
  in_ = sp.in, out_ = sp.out, n_contracted_ = sp.n_contracted;
  init_adapter(base_weight());
}

void LoRA::init_adapter(const Tensor& w_mat) {
  const int64_t r = config_.r;
  LR_CHECK(r >= 1 && r <= std::min(in_, out_), "LoRA: rank {} must be between 1 and min(in, out) = {} for a {} layer",
           r, std::min(in_, out_), detail::format("[{}, {}]", out_, in_));
  LR_CHECK(config_.alpha > 0 && std::isfinite(config_.alpha), "LoRA: alpha must be positive, got {}", config_.alpha);
  LR_CHECK(config_.dropout >= 0 && config_.dropout < 1, "LoRA: dropout must be in [0, 1), got {}", config_.dropout);
  base_->freeze();
  register_module("base_layer", base_);
  const DType dt = w_mat.dtype();
  const Device dev = w_mat.device();
  Tensor a, b;
  if (config_.init == LoraInit::Pissa) {
    NoGradGuard ng;
    SvdResult d = svd(w_mat);
    // scale · B A must equal W's top-r part: each factor takes sqrt(S_r / scale).
    Tensor root = sqrt(mul(d.s.slice(0, 0, r), 1.0 / scale()));
    a = mul(d.vt.slice(0, 0, r), root.unsqueeze(1)).contiguous();
    b = mul(d.u.slice(1, 0, r), root).contiguous();
    Tensor residual = sub(w_mat, mul(matmul(b, a), scale()));
    Tensor kernel = dense_ ? dense_->kernel() : einsum_->kernel();
    if (dense_)
      kernel.copy_(residual);
    else
      kernel.copy_(residual.mT().reshape(kernel.shape()));
  } else {
    a = config_.init == LoraInit::Kaiming
            ? initialize(Init::kaiming_uniform(), {r, in_}, Fans{in_, r}, gen_, dt, dev)
            : initialize(Init::normal(1.0 / static_cast<double>(r)), {r, in_}, Fans{in_, r}, gen_, dt, dev);
    b = Tensor::zeros({out_, r}, dt, dev);
  }
  a_ = register_module("lora_A", std::make_shared<LoraWeight>(a.requires_grad_()))->weight();
  b_ = register_module("lora_B", std::make_shared<LoraWeight>(b.requires_grad_()))->weight();
}

Tensor LoRA::base_weight() const {
  if (dense_) return dense_->kernel();
  return einsum_->kernel().reshape({in_, out_}).mT();
}

Tensor LoRA::delta_weight() const {
  return mul(matmul(b_, a_), scale());
}

Tensor LoRA::einsum_adapter_input(const Tensor& x) const {
  // The leading (batch-like) axes are the input's axes before the contracted ones.
  const size_t n_lead = einsum_->shapes().input_spec.size() - n_contracted_;
  Shape flat(x.shape().begin(), x.shape().begin() + static_cast<int64_t>(n_lead));
  flat.push_back(in_);
  return x.reshape(flat);
}

Tensor LoRA::forward(const Tensor& x) {
  if (merged_) return base_->forward(x);
  const double bs = base_scale(), s = scale();
  const bool drop = config_.dropout > 0 && is_training();
  if (dense_) {
    LR_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_, "LoRA: input {} does not end in in_features {}",
             x.defined() ? x.shape() : Shape{}, in_);
    Tensor y;
    if (drop) {
      Tensor xd = dropout(x, config_.dropout, true, gen_.seed(), gen_.take(x.numel()));
      y = add(mul(matmul(x, dense_->kernel().mT()), bs), mul(matmul(matmul(xd, a_.mT()), b_.mT()), s));
      if (dense_->bias().defined()) y = add(y, dense_->bias());
    } else {
      y = lora_linear(x, dense_->kernel(), dense_->bias(), a_, b_, s, bs);
    }
    return apply_activation(dense_->activation(), y);
  }
  // EinsumDense: [lead..., contracted...] -> [lead..., in] -> [lead..., out] -> [lead..., own...]
  const EinsumDenseShapes& sh = einsum_->shapes();
  LR_CHECK(x.defined() && x.dim() == static_cast<int64_t>(sh.input_spec.size()),
           "LoRA: input {} must have {} axes for EinsumDense '{}'", x.defined() ? x.shape() : Shape{},
           sh.input_spec.size(), einsum_->equation());
  Tensor xf = einsum_adapter_input(x);
  Tensor xa = drop ? dropout(xf, config_.dropout, true, gen_.seed(), gen_.take(xf.numel())) : xf;
  Tensor y;
  if (drop) {
    y = add(mul(matmul(xf, base_weight().mT()), bs), mul(matmul(matmul(xa, a_.mT()), b_.mT()), s));
  } else {
    y = lora_linear(xf, base_weight(), Tensor(), a_, b_, s, bs);
  }
  Shape out_shape(xf.shape().begin(), xf.shape().end() - 1);
  for (size_t i = n_contracted_; i < sh.kernel_spec.size(); ++i) out_shape.push_back(sh.kernel[i]);
  y = y.reshape(out_shape);
  if (einsum_->bias().defined()) y = add(y, einsum_->bias());
  return apply_activation(einsum_->activation(), y);
}

std::string LoRA::describe() const {
  return detail::format("LoRA(r={}, alpha={}, scale={}, init={}, base_scale={} {}, {})", config_.r, config_.alpha,
                        scale(), lora_init_name(config_.init), config_.base_scale.name(), base_scale(),
                        base_->describe());
}

void LoRA::merge() {
  LR_CHECK(!merged_, "LoRA: merge() on an adapter that is already merged");
  NoGradGuard ng;
  Tensor kernel = dense_ ? dense_->kernel() : einsum_->kernel();
  saved_kernel_ = kernel.clone();
  Tensor merged_w = add(mul(base_weight(), base_scale()), delta_weight());
  kernel.copy_(dense_ ? merged_w : merged_w.mT().reshape(kernel.shape()));
  merged_ = true;
}

void LoRA::unmerge() {
  LR_CHECK(merged_, "LoRA: unmerge() on an adapter that is not merged");
  NoGradGuard ng;
  Tensor kernel = dense_ ? dense_->kernel() : einsum_->kernel();
  kernel.copy_(saved_kernel_);
  saved_kernel_ = Tensor();
  merged_ = false;
}

std::map<std::string, Tensor> LoRA::adapter_state(const std::string& prefix) const {
  const std::string p = prefix.empty() ? "" : prefix + ".";
  return {{p + "lora_A.weight", a_}, {p + "lora_B.weight", b_}};
}

void LoRA::load_adapter_state(const std::map<std::string, Tensor>& state, const std::string& prefix) {
  NoGradGuard ng;
  for (auto& [name, mine] : adapter_state(prefix)) {
    auto it = state.find(name);
    LR_CHECK(it != state.end(), "LoRA: the adapter file has no tensor '{}'", name);
    LR_CHECK(it->second.shape() == mine.shape(), "LoRA: '{}' has shape {} but this layer needs {}", name,
             it->second.shape(), mine.shape());
    Tensor dst = mine;
    dst.copy_(it->second);
  }
}

// ---- injection and files

namespace {

// Freezes everything in `model` except the adapters injected before (PEFT's get_peft_model leaves
// every lora_A / lora_B trainable), so that injecting several layers one after another works.
void freeze_all_but_adapters(Module& model) {
  std::vector<Module*> adapters;
  for (auto& [name, m] : model.named_modules())
    if (auto* l = dynamic_cast<LoRA*>(m)) adapters.push_back(l);
  model.freeze();
  for (Module* l : adapters) {
    l->child("lora_A").unfreeze();
    l->child("lora_B").unfreeze();
  }
}

}  // namespace

std::shared_ptr<LoRA> inject_lora(Module& model, const std::string& path, const LoraConfig& config) {
  std::shared_ptr<Module> target = model.submodule_ptr(path);
  std::shared_ptr<LoRA> lora;
  if (auto d = std::dynamic_pointer_cast<Dense>(target)) {
    freeze_all_but_adapters(model);
    lora = std::make_shared<LoRA>(d, config);
  } else if (auto e = std::dynamic_pointer_cast<EinsumDense>(target)) {
    freeze_all_but_adapters(model);
    lora = std::make_shared<LoRA>(e, config);
  } else {
    LR_FAIL("LoRA: '{}' is a {}, not a Dense or EinsumDense layer", path, target->type_name());
  }
  model.replace_submodule(path, lora);
  return lora;
}

int64_t merge_and_unload(Module& model) {
  std::vector<std::pair<std::string, std::shared_ptr<LoRA>>> adapters;
  for (auto& [path, m] : model.named_modules())
    if (dynamic_cast<LoRA*>(m) != nullptr)
      adapters.emplace_back(path, std::dynamic_pointer_cast<LoRA>(model.submodule_ptr(path)));
  for (auto& [path, lora] : adapters) {
    if (!lora->merged()) lora->merge();
    model.replace_submodule(path, lora->base_ptr());
  }
  return static_cast<int64_t>(adapters.size());
}

std::string lora_adapter_config_json(const LoraConfig& c, const std::vector<std::string>& target_modules) {
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["lora_alpha"] = c.alpha;
  j["lora_dropout"] = c.dropout;
  j["use_rslora"] = c.use_rslora;
  j["target_modules"] = target_modules;
  if (c.init == LoraInit::Kaiming)
    j["init_lora_weights"] = true;
  else
    j["init_lora_weights"] = lora_init_name(c.init);
  j["base_scale"] = {{"schedule", c.base_scale.name()},
                     {"start", c.base_scale.start},
                     {"target", c.base_scale.target},
                     {"steps", c.base_scale.steps}};
  j["seed"] = c.seed;
  return j.dump(2) + "\n";
}

void save_lora_adapter(const std::string& dir, const std::vector<std::pair<std::string, const LoRA*>>& adapters) {
  LR_CHECK(!adapters.empty(), "save_lora_adapter: no adapters to save");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LR_CHECK(!ec, "save_lora_adapter: cannot create folder '{}': {}", dir, ec.message());
  std::map<std::string, Tensor> tensors;
  std::vector<std::string> targets;
  for (auto& [path, lora] : adapters) {
    for (auto& kv : lora->adapter_state(path)) tensors.insert(kv);
    targets.push_back(path);
  }
  io::save_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  io::write_file_atomic(dir + "/adapter_config.json", lora_adapter_config_json(adapters[0].second->config(), targets));
}

}  // namespace lowrank::nn
