// Constant, linear-warmup and cosine-with-warmup learning-rate schedules.
#include "optim/schedule.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "core/error.h"

namespace lowrank::optim {

LrSchedule::LrSchedule(Kind kind, double lr, int64_t warmup, int64_t total, double min_lr)
    : kind_(kind), lr_(lr), warmup_(warmup), total_(total), min_lr_(min_lr) {
  LR_CHECK(std::isfinite(lr) && lr >= 0, "LrSchedule: learning rate must be finite and >= 0, got {}", lr);
  LR_CHECK(warmup >= 0, "LrSchedule: warmup_steps must be >= 0, got {}", warmup);
}

LrSchedule LrSchedule::constant(double lr) {
  return LrSchedule(Kind::Constant, lr, 0, 0, lr);
}

LrSchedule LrSchedule::linear_warmup(double lr, int64_t warmup_steps) {
  return LrSchedule(Kind::LinearWarmup, lr, warmup_steps, 0, lr);
}

LrSchedule LrSchedule::cosine(double lr, int64_t warmup_steps, int64_t total_steps, double min_lr) {
  LR_CHECK(total_steps > warmup_steps, "LrSchedule::cosine: total_steps {} must exceed warmup_steps {}", total_steps,
           warmup_steps);
  LR_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= lr, "LrSchedule::cosine: min_lr {} must be in [0, lr={}]",
           min_lr, lr);
  return LrSchedule(Kind::Cosine, lr, warmup_steps, total_steps, min_lr);
}

double LrSchedule::operator()(int64_t step) const {
  LR_CHECK(step >= 1, "LrSchedule: steps are 1-based, got {}", step);
  if (kind_ == Kind::Constant) return lr_;
  if (step <= warmup_) return lr_ * static_cast<double>(step) / static_cast<double>(warmup_);
  if (kind_ == Kind::LinearWarmup) return lr_;
  if (step >= total_) return min_lr_;
  double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
  return min_lr_ + 0.5 * (lr_ - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress));
}

std::string LrSchedule::str() const {
  std::ostringstream os;
  switch (kind_) {
    case Kind::Constant:
      os << "constant(lr=" << lr_ << ")";
      break;
    case Kind::LinearWarmup:
      os << "linear_warmup(lr=" << lr_ << ", warmup=" << warmup_ << ")";
      break;
    case Kind::Cosine:
      os << "cosine(lr=" << lr_ << ", warmup=" << warmup_ << ", total=" << total_ << ", min_lr=" << min_lr_ << ")";
      break;
  }
  return os.str();
}

}  // namespace lowrank::optim
