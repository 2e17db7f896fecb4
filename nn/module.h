// Module: the base of every layer and model. Holds named parameters, buffers and submodules,
// gives them hierarchical names ("layers.1.kernel"), and saves/loads them through safetensors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowrank::nn {

struct ParameterCount {
  int64_t trainable = 0;  // elements of parameters that require grad
  int64_t total = 0;      // elements of all parameters (buffers not counted)
};

// What a non-strict load_state_dict skipped.
struct LoadReport {
  std::vector<std::string> missing;     // in the module, absent from the dict
  std::vector<std::string> unexpected;  // in the dict, absent from the module
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Single-input modules override this; the default throws naming the module type.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string type_name() const = 0;
  // One line for summaries, e.g. "Dense(784 -> 128, relu)".
  virtual std::string describe() const { return type_name(); }

  // ---- parameters, in registration order, depth first; names are dotted paths
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> trainable_parameters() const;  // those that require grad (what an optimizer takes)
  // named_parameters() restricted to those that require grad: what an optimizer takes with names
  // (per-group settings, checkpoints by name). PyTorch spells it as a filter on named_parameters().
  NamedTensors named_trainable_parameters() const;
  NamedTensors named_buffers() const;
  // The tensor at a dotted path ("layers.2.kernel"); throws naming the path when there is none.
  Tensor parameter(const std::string& path) const;
  ParameterCount parameter_count() const;
  void zero_grad();

  // ---- state: parameters and buffers by dotted name. The tensors share storage with the module.
  std::map<std::string, Tensor> state_dict() const;
  // Copies each tensor into the module's own (casting dtype, moving device). Strict: a missing,
  // extra or mis-shaped tensor is refused with one message naming every such tensor and, for a
  // shape mismatch, both shapes; nothing is copied then. Not strict: shapes must still match,
  // missing and extra names are reported back.
  LoadReport load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  // Returns the file's metadata.
  std::map<std::string, std::string> load(const std::string& path, bool strict = true);

  // ---- modes
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // requires_grad off (on) for every parameter of this module and its submodules.
  void freeze();
  void unfreeze();
  // Moves (casts) every parameter and buffer in place: tensors handed out earlier (to an
  // optimizer, for instance) see the change because their storage is swapped, not replaced.
  void to(Device device);
  void to(DType dtype);

  // ---- submodules
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  // Every module below this one (not this one), depth first, with its dotted path.
  std::vector<std::pair<std::string, Module*>> named_modules() const;
  // The submodule at a dotted path ("layers.2"); throws naming the path when there is none.
  Module& submodule(const std::string& path) const;
  std::shared_ptr<Module> submodule_ptr(const std::string& path) const;
  // Swaps the submodule at `path` for `replacement` (LoRA injection). Containers see the new
  // module only if they call their children through child()/children() at forward time, as
  // Sequential does; a class that cached a typed pointer keeps calling the old one.
  void replace_submodule(const std::string& path, std::shared_ptr<Module> replacement);
  // A direct child by name; throws naming it when there is none.
  Module& child(const std::string& name) const;

  // A Keras-style table: one row per module with its parameters, then the totals.
  std::string summary() const;

 protected:
  // Registers `t` under `name` (no dots) and returns it; the module keeps its own handle to the
  // same TensorImpl, so a Tensor member and the registry never disagree.
  Tensor register_parameter(const std::string& name, Tensor t, bool trainable = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Called after train()/eval() changed this module's mode.
  virtual void on_mode_change() {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, NamedTensors& params, NamedTensors* buffers) const;

  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace lowrank::nn
