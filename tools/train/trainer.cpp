// Trainer::run(): step, guard, log, evaluate, checkpoint, stop; and the resume that feeds it.
#include "tools/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "optim/clip.h"
#include "optim/finite.h"
#include "tools/train/clock.h"

namespace lowrank::train {
using nlohmann::json;

namespace {

constexpr const char* kTrainerStateFormat = "lowrank-trainer";
// The next step's time is taken as the longest of this many recent ones: one step of a busy shared
// machine can take twice the one before it.
constexpr size_t kRecentSteps = 10;

// The longer of two times, where NaN (not measured) gives way to any measure.
double longest(double a, double b) {
  return std::isnan(a) ? b : std::isnan(b) ? a : std::max(a, b);
}

}  // namespace

Trainer::Trainer(optim::Optimizer& optimizer, TrainerOptions options, RunFolder* run)
    : optimizer_(optimizer), options_(std::move(options)), run_(run), progress_(options_.progress && options_.leader) {
  LR_CHECK(options_.total_steps >= 1, "{}: the run has no steps (total_steps {})", options_.command,
           options_.total_steps);
  LR_CHECK(options_.log_every >= 0 && options_.eval_every >= 0 && options_.checkpoint_every >= 0 &&
               options_.stop_at >= 0 && options_.max_time >= 0 && options_.steps_per_epoch >= 0,
           "{}: trainer intervals must be >= 0", options_.command);
  LR_CHECK(options_.check_every >= 1, "{}: check_every must be >= 1, got {}", options_.command, options_.check_every);
}

std::string Trainer::where(int64_t step, bool done) const {
  const int64_t n = options_.steps_per_epoch;
  if (n <= 0) return "step " + std::to_string(step);
  if (done && step % n == 0) return "epoch " + std::to_string(step / n);
  const int64_t s = step - 1;  // 0-based: the step being taken, or (done) the last one taken
  return "epoch " + std::to_string(s / n + 1) + ", step " + std::to_string(s % n + 1);
}

double Trainer::now() const {
  return options_.clock ? options_.clock() : now_seconds();
}

double Trainer::run_seconds() const {
  return now() - run_start_;
}

void Trainer::print(const std::string& line) {
  if (options_.leader) progress_.print(line);
}

void Trainer::stop_on_bad_value(const std::string& what_went_wrong) const {
  std::string kept = "No checkpoint was written.";
  if (last_checkpoint_step_ >= 0)
    kept = detail::format("The last good checkpoint ({}) is {} (model.safetensors beside it is that one).",
                          where(last_checkpoint_step_, true), last_checkpoint_);
  else if (restored_)
    kept = detail::format("The last good checkpoint ({}) is the one resumed from, {}.", where(restored_->step, true),
                          restored_->dir);
  throw Error(detail::format("{}: {}; training stopped. {}", options_.command, what_went_wrong, kept));
}

void Trainer::check_parameters(const std::string& when) const {
  if (auto bad = optim::first_non_finite(optimizer_.parameters()))
    stop_on_bad_value(
        detail::format("parameter '{}' holds NaN or infinity (element {}) {}", bad->first, bad->second, when));
}

int64_t Trainer::restore(const Checkpoint& c) {
  const std::string& cmd = options_.command;
  const std::string saved_cmd = c.trainer_state.value("command", "");
  LR_CHECK(saved_cmd == cmd, "{}: --resume {}: that is a checkpoint of `{}`, not of `{}`", cmd, c.dir, saved_cmd, cmd);
  if (c.step >= options_.total_steps)
    LR_FAIL("{}: --resume {}: the run has done {} already; ask for more with {}", cmd, c.dir,
            options_.steps_per_epoch > 0 && c.step % options_.steps_per_epoch == 0
                ? std::to_string(c.step / options_.steps_per_epoch) + " epochs"
                : std::to_string(c.step) + " steps",
            options_.total_flag);
  try {
    const auto md = optimizer_.load(c.file("optimizer.safetensors"));
    LR_CHECK(md.count("step") && md.at("step") == std::to_string(c.step),
             "the optimizer state is from step {} but the checkpoint from step {}",
             md.count("step") ? md.at("step") : std::string("?"), c.step);
    if (hooks.load) hooks.load(c);
  } catch (const Error& e) {
    throw Error(cmd + ": --resume " + c.dir + ": " + e.what());
  }
  history_.clear();
  if (auto h = c.trainer_state.find("history"); h != c.trainer_state.end() && h->is_array())
    for (const json& r : *h) history_.push_back(r);
  prior_seconds_ = c.trainer_state.value("seconds", 0.0);
  // What the evaluations and checkpoints took before: a --max-time of this run needs them from its start.
  if (auto t = c.trainer_state.find("timing"); t != c.trainer_state.end() && t->is_object()) {
    const json& timing = *t;
    auto seconds = [&](const char* key) {
      auto v = timing.find(key);
      return v != timing.end() && v->is_number() && v->get<double>() >= 0 ? v->get<double>() : NAN;
    };
    evaluation_seconds_ = seconds("evaluation");
    checkpoint_seconds_ = seconds("checkpoint");
  }
  step_ = start_step_ = c.step;
  restored_ = c;
  check_parameters("in the checkpoint resumed from");
  return c.step;
}

void Trainer::add_record(std::optional<json> record) {
  if (!record) return;
  history_.push_back(std::move(*record));
  records_dirty_ = true;
}

void Trainer::evaluate(int64_t step) {
  if (!hooks.evaluate) return;
  const double t0 = now();
  add_record(hooks.evaluate(step));
  evaluation_seconds_ = longest(evaluation_seconds_, now() - t0);
}

void Trainer::checkpoint(int64_t step) {
  const double t0 = now();
  check_parameters("after " + where(step, false));  // never write a checkpoint the guard would refuse
  if (run_ && options_.leader) {
    const double seconds = prior_seconds_ + (t0 - run_start_);
    json timing = json::object();  // (a time not measured yet is left out)
    if (!std::isnan(evaluation_seconds_)) timing["evaluation"] = evaluation_seconds_;
    if (!std::isnan(checkpoint_seconds_)) timing["checkpoint"] = checkpoint_seconds_;
    last_checkpoint_ = run_->commit(step, [&](CheckpointWriter& w) {
      if (hooks.save) hooks.save(w);
      optimizer_.save(w.path("optimizer.safetensors"), {{"step", std::to_string(step)}});
      json state{{"format", kTrainerStateFormat},
                 {"command", options_.command},
                 {"step", step},
                 {"seconds", seconds},
                 {"timing", timing},
                 {"history", history_},
                 {"state", w.state()}};
      io::write_file_atomic(w.path(kTrainerStateFile),
                            state.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
    });
    last_checkpoint_step_ = step;
    run_->write_metrics(history_);
    records_dirty_ = false;
  }
  checkpoint_seconds_ = longest(checkpoint_seconds_, now() - t0);
}

bool Trainer::out_of_time(double step_estimate, bool evaluation_due, bool checkpoint_due) const {
  // Not measured yet: as long as a step (the checkpoint is measured after the first step; see trainer.h).
  const double evaluation = !hooks.evaluate                   ? 0.0
                            : std::isnan(evaluation_seconds_) ? step_estimate
                                                              : evaluation_seconds_;
  const double checkpoint = std::isnan(checkpoint_seconds_) ? step_estimate : checkpoint_seconds_;
  const double due_now = (evaluation_due ? evaluation : 0.0) + (checkpoint_due ? checkpoint : 0.0);
  const double after = step_ + 1 == options_.total_steps ? options_.evaluations_after * evaluation : 0.0;
  return (now() - budget_start_) + due_now + step_estimate + evaluation + checkpoint + after > options_.max_time;
}

TrainSummary Trainer::run() {
  LR_CHECK(static_cast<bool>(hooks.forward), "{}: Trainer::run needs hooks.forward", options_.command);
  TrainSummary summary;
  summary.start_step = start_step_;
  run_start_ = now();
  budget_start_ = std::isnan(options_.started_at) ? run_start_ : options_.started_at;
  recent_steps_.clear();
  progress_.restart();
  if (run_ && options_.leader) run_->begin();
  if (!restored_) check_parameters("before the first step");
  // With --max-time a fresh run evaluates before its first step too, to time an evaluation (trainer.h).
  if (start_step_ == 0 && (options_.eval_at_start || (options_.max_time > 0 && std::isnan(evaluation_seconds_))))
    evaluate(0);
  if (records_dirty_ && run_ && options_.leader) run_->write_metrics(history_), records_dirty_ = false;

  const int64_t total = options_.total_steps;
  const int64_t end = options_.stop_at > 0 ? std::min(options_.stop_at, total) : total;
  IntervalStats interval;
  auto elapsed = [&] { return run_seconds(); };
  while (step_ < total) {
    const double t0 = now();
    double evaluating = 0, checkpointing = 0;  // of this step's time
    if (hooks.before_step) hooks.before_step(step_);
    StepOutput out = hooks.forward(step_);
    LR_CHECK(out.loss.defined() && out.loss.numel() == 1, "{}: the step's loss must be one number", options_.command);
    const double value = out.loss.item();
    if (!std::isfinite(value)) {
      progress_.clear();
      stop_on_bad_value(
          detail::format("the loss is {} at {}", std::isnan(value) ? "NaN" : "infinite", where(step_ + 1, false)));
    }
    optimizer_.zero_grad();
    out.loss.backward();
    if (hooks.after_backward) hooks.after_backward();
    if (options_.grad_clip > 0) optim::clip_grad_norm(optimizer_.parameters(), options_.grad_clip);
    const double lr_used = optimizer_.lr(0);
    optimizer_.step();
    ++step_;
    const bool last_possible = step_ == total || (options_.stop_at > 0 && step_ >= options_.stop_at);
    // With --max-time and no checkpoint timed yet, the first step of the run is followed by one to time it.
    const bool time_checkpoint = options_.max_time > 0 && std::isnan(checkpoint_seconds_) && step_ == start_step_ + 1;
    const bool checkpoint_due = (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0) ||
                                (time_checkpoint && !last_possible);
    const bool evaluation_due = options_.eval_every > 0 && step_ % options_.eval_every == 0;
    if (step_ % options_.check_every == 0 && !last_possible && !checkpoint_due)
      check_parameters("after " + where(step_, false));  // (a checkpoint looks at them itself)
    const double dt = now() - t0;
    summary.step_seconds += dt;
    summary.samples += out.samples;
    summary.tokens += out.tokens;
    interval.steps += 1;
    interval.loss += value * out.weight;
    interval.weight += out.weight;
    interval.samples += out.samples;
    interval.tokens += out.tokens;
    for (const auto& [k, v] : out.sums) interval.sums[k] += v;
    interval.step_seconds += dt;
    interval.lr = lr_used;

    // --max-time: stop when the work due now, another step and the final work would not fit (trainer.h).
    double step_estimate = dt;
    for (double s : recent_steps_) step_estimate = std::max(step_estimate, s);
    bool stop_early =
        step_ < total && ((options_.max_time > 0 && out_of_time(step_estimate, evaluation_due, checkpoint_due)) ||
                          (options_.stop_at > 0 && step_ >= options_.stop_at));
    if (hooks.agree_stop && options_.max_time > 0) stop_early = hooks.agree_stop(stop_early);
    const bool last = step_ == total || stop_early;
    if ((options_.log_every > 0 && step_ % options_.log_every == 0) || last) {
      IntervalStats s = interval;
      s.step = step_;
      s.loss = s.weight > 0 ? s.loss / s.weight : NAN;
      s.seconds = prior_seconds_ + elapsed();
      if (hooks.log) add_record(hooks.log(s));
      interval = IntervalStats{};
    }
    if (evaluation_due || last) {
      const double e0 = now();
      evaluate(step_);
      evaluating = now() - e0;
    }
    if (checkpoint_due || last) {
      const double c0 = now();
      checkpoint(step_);
      checkpointing = now() - c0;
    } else if (records_dirty_ && run_ && options_.leader) {
      run_->write_metrics(history_);  // the live curve between checkpoints (a resume keeps only the checkpoint's)
      records_dirty_ = false;
    }
    if (progress_.enabled()) {
      IntervalStats running = interval;
      running.step = step_;
      running.loss = running.weight > 0 ? running.loss / running.weight : value;
      running.lr = lr_used;
      running.seconds = prior_seconds_ + elapsed();
      const std::string text = hooks.progress_text
                                   ? hooks.progress_text(running)
                                   : detail::format("step {}/{} loss {}", step_, total, fixed(value, 4));
      progress_.draw(
          static_cast<double>(step_ - start_step_) / static_cast<double>(std::max<int64_t>(1, end - start_step_)),
          text);
    }
    if (stop_early) {
      summary.stopped_early = true;
      break;
    }
    // The step with its log and metrics writes, for the next --max-time estimate.
    recent_steps_.push_back(now() - t0 - evaluating - checkpointing);
    if (recent_steps_.size() > kRecentSteps) recent_steps_.pop_front();
  }
  progress_.clear();
  summary.final_step = step_;
  summary.seconds = elapsed();
  summary.last_checkpoint = last_checkpoint_;
  return summary;
}

}  // namespace lowrank::train
