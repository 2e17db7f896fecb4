// Optimizer: updates named parameters in place from their gradients, counts steps, and saves or
// restores its per-parameter buffers so a resumed run continues bit-identically.
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

class Optimizer {
 public:
  Optimizer(NamedParameters params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (parameters without one are skipped, as in
  // torch.optim). The step counter advances first, so the first step is step 1.
  void step();
  // Drops every parameter's gradient (torch's set_to_none=True).
  void zero_grad();

  int64_t step_count() const { return step_count_; }
  // The rate the next step will use: the schedule's value at step_count() + 1, or the fixed lr.
  double lr() const;
  void set_lr(double lr);  // a fixed rate; clears any schedule
  void set_schedule(const LrSchedule& schedule);
  const NamedParameters& parameters() const { return params_; }
  virtual const char* name() const = 0;  // "adam", "adamw", "sgd"

  // The per-parameter buffers keyed "<parameter>.<buffer>" (e.g. "layers.1.kernel.exp_avg"): the
  // live tensors, on the parameters' device. With step_count() this is the whole state.
  std::map<std::string, Tensor> state_dict() const;
  // Copies the buffers in (from any device; shapes and dtypes must match) and sets the step count.
  // Unknown keys, missing required buffers and mismatches throw, naming the key, and leave the
  // optimizer unchanged.
  void load_state_dict(const std::map<std::string, Tensor>& state, int64_t step_count);

  // A safetensors file of state_dict() with metadata {"optimizer": name(), "step": step_count(),
  // hyperparameters..., plus `extra` (e.g. a data loader's state)}; written atomically.
  void save(const std::string& path, const std::map<std::string, std::string>& extra = {}) const;
  // Restores what save() wrote (the optimizer name must match) and returns the file's metadata.
  // Hyperparameters stay this optimizer's own: the saved ones are only a record.
  std::map<std::string, std::string> load(const std::string& path);

 protected:
  // Updates every parameter that has a gradient, for optimizer step `step` (1-based) at rate `lr`.
  virtual void update(int64_t step, double lr) = 0;
  // Buffer names per parameter; `required` buffers exist from construction on, the others appear
  // at a parameter's first update (SGD's momentum buffer, as in torch).
  virtual std::vector<std::string> buffer_names() const = 0;
  virtual bool buffers_required() const = 0;
  virtual std::map<std::string, std::string> hyperparameters() const = 0;

  NamedParameters params_;
  // state_[i] holds parameter i's buffers by buffer name.
  std::vector<std::map<std::string, Tensor>> state_;

 private:
  double lr_;
  std::optional<LrSchedule> schedule_;
  int64_t step_count_ = 0;
};

}  // namespace lowrank::optim
