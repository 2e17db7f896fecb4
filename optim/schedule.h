// Learning-rate schedules as pure functions of the optimizer step, so a resumed run gets the same
// rates as an uninterrupted one from the step count alone.
#pragma once
#include <cstdint>
#include <string>

namespace lowrank::optim {

class LrSchedule {
 public:
  enum class Kind { Constant, LinearWarmup, Cosine };

  // lr at every step.
  static LrSchedule constant(double lr);
  // lr * step / warmup_steps for the first warmup_steps steps, then lr.
  static LrSchedule linear_warmup(double lr, int64_t warmup_steps);
  // Linear warmup, then half a cosine from lr down to min_lr at total_steps (min_lr after that).
  static LrSchedule cosine(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);

  // The rate of optimizer step `step` (1-based: the first step is 1, as Optimizer::step counts).
  double operator()(int64_t step) const;
  Kind kind() const { return kind_; }
  double peak_lr() const { return lr_; }  // the rate after warmup
  std::string str() const;                // e.g. "cosine(lr=0.001, warmup=100, total=1000, min_lr=0)"

 private:
  LrSchedule(Kind kind, double lr, int64_t warmup, int64_t total, double min_lr);
  Kind kind_;
  double lr_;
  int64_t warmup_, total_;
  double min_lr_;
};

}  // namespace lowrank::optim
