// Optimizer: updates named parameters in place from their gradients, in parameter groups with
// their own learning rate and weight decay (PyTorch's param_groups), counts steps, and saves or
// restores its per-parameter buffers in one file so a resumed run continues bit-identically.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "optim/schedule.h"

namespace lowrank::optim {

// Parameters in a fixed order, each with a unique name (e.g. "layers.1.kernel"). The optimizer
// holds the Tensor handles and writes through them: load new weights into a parameter with
// copy_(), not by assigning a new Tensor to the module.
using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

// A group of parameters sharing hyperparameters, as a dict in torch's `param_groups`: what it
// leaves unset comes from the optimizer's options. GPT-2's recipe, for instance, is two groups:
// {"decay", matrices}, {"no_decay", biases and LayerNorm, weight_decay = 0}.
struct ParamGroup {
  std::string name;  // names the group in messages and in the state file's metadata
  NamedParameters params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};
using ParamGroups = std::vector<ParamGroup>;

// A group as the optimizer holds it: its parameters are parameters()[begin, end).
struct GroupInfo {
  std::string name;
  double lr = 0;        // the group's rate without a schedule
  bool own_lr = false;  // set by the group (else the optimizer's default)
  double weight_decay = 0;
  size_t begin = 0, end = 0;
};

class Optimizer {
 public:
  // One group holding every parameter.
  Optimizer(NamedParameters params, double lr, double weight_decay);
  Optimizer(ParamGroups groups, double lr, double weight_decay);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (parameters without one are skipped, as in
  // torch.optim). The step counter advances first, so the first step is step 1.
  void step();
  // Drops every parameter's gradient (torch's set_to_none=True).
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  // The rate group `group`'s next step will use. A schedule replaces the optimizer's default rate:
  // groups without their own lr follow it exactly, a group with its own keeps its ratio to the
  // default (lr_g * schedule(k) / default lr). With the schedule's peak as the default this is
  // torch's LambdaLR with lambda = schedule / peak, applied to every group.
  double lr(size_t group = 0) const;
  // A fixed rate for every group (their own rates too); clears any schedule.
  void set_lr(double lr);
  void set_schedule(const LrSchedule& schedule);
  double default_lr() const { return default_lr_; }
  const std::optional<LrSchedule>& schedule() const { return schedule_; }
  // Every parameter, group after group.
  const NamedParameters& parameters() const { return params_; }
  const std::vector<GroupInfo>& groups() const { return groups_; }
  virtual const char* name() const = 0;  // "adam", "adamw", "sgd"

  // The per-parameter buffers keyed "<parameter>.<buffer>" (e.g. "layers.1.kernel.exp_avg"): the
  // live tensors, on the parameters' device. With step_count() this is the whole state.
  std::map<std::string, Tensor> state_dict() const;
  // Copies the buffers in (from any device; shapes and dtypes must match) and sets the step count.
  // Unknown keys, missing required buffers, mismatches and values no run could have produced
  // (NaN or infinite entries; a negative second moment) throw, naming the key, and leave the
  // optimizer unchanged.
  void load_state_dict(const std::map<std::string, Tensor>& state, int64_t step_count);

  // A safetensors file of state_dict() with metadata {"optimizer": name(), "step": step_count(),
  // hyperparameters..., "group.<i>.name|lr|weight_decay|params" per group, plus `extra`};
  // written atomically.
  void save(const std::string& path, const std::map<std::string, std::string>& extra = {}) const;
  // Restores what save() wrote (the optimizer name must match) and returns the file's metadata.
  // Hyperparameters stay this optimizer's own: the saved ones are only a record. Buffers are
  // matched by parameter name, so the grouping may change between runs.
  std::map<std::string, std::string> load(const std::string& path);

 protected:
  // Updates every parameter that has a gradient, for optimizer step `step` (1-based), with
  // `lrs[g]` the rate of group g.
  virtual void update(int64_t step, const std::vector<double>& lrs) = 0;
  // Buffer names per parameter; `required` buffers exist from construction on, the others appear
  // at a parameter's first update (SGD's momentum buffer, as in torch).
  virtual std::vector<std::string> buffer_names() const = 0;
  virtual bool buffers_required() const = 0;
  virtual std::map<std::string, std::string> hyperparameters() const = 0;
  // Throws naming `key` when a loaded buffer holds values this optimizer could never have written
  // (beyond non-finite ones, which the base refuses for every buffer).
  virtual void check_loaded_buffer(const std::string& buffer, const std::string& key, const Tensor& t) const;
  // A hyperparameter as metadata text, with every digit a double has (17 significant).
  static std::string number_text(double v);

  NamedParameters params_;
  std::vector<GroupInfo> groups_;
  // state_[i] holds parameter i's buffers by buffer name.
  std::vector<std::map<std::string, Tensor>> state_;

 private:
  std::optional<LrSchedule> schedule_;
  double default_lr_ = 0;
  int64_t step_count_ = 0;
};

}  // namespace lowrank::optim
