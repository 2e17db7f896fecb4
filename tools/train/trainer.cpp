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
  const int64_t s = done ? step : step - 1;  // the step being taken is in epoch s / n + 1
  return "epoch " + std::to_string(s / n + 1) + ", step " + std::to_string(s % n + 1);
}

double Trainer::run_seconds() const {
  return now_seconds() - run_start_;
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

void Trainer::checkpoint(int64_t step) {
  check_parameters("after " + where(step, false));  // never write a checkpoint the guard would refuse
  if (!run_ || !options_.leader) return;
  const double seconds = prior_seconds_ + (now_seconds() - run_start_);
  last_checkpoint_ = run_->commit(step, [&](CheckpointWriter& w) {
    if (hooks.save) hooks.save(w);
    optimizer_.save(w.path("optimizer.safetensors"), {{"step", std::to_string(step)}});
    json state{{"format", kTrainerStateFormat}, {"command", options_.command}, {"step", step}, {"seconds", seconds},
               {"history", history_},           {"state", w.state()}};
    io::write_file_atomic(w.path(kTrainerStateFile), state.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
  });
  last_checkpoint_step_ = step;
  run_->write_metrics(history_);
  records_dirty_ = false;
}

TrainSummary Trainer::run() {
  LR_CHECK(static_cast<bool>(hooks.forward), "{}: Trainer::run needs hooks.forward", options_.command);
  TrainSummary summary;
  summary.start_step = start_step_;
  run_start_ = now_seconds();
  progress_.restart();
  if (run_ && options_.leader) run_->begin();
  if (!restored_) check_parameters("before the first step");
  if (start_step_ == 0 && options_.eval_at_start && hooks.evaluate) add_record(hooks.evaluate(0));
  if (records_dirty_ && run_ && options_.leader) run_->write_metrics(history_), records_dirty_ = false;

  const int64_t total = options_.total_steps;
  const int64_t end = options_.stop_at > 0 ? std::min(options_.stop_at, total) : total;
  IntervalStats interval;
  auto elapsed = [&] { return run_seconds(); };
  while (step_ < total) {
    const double t0 = now_seconds();
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
    const bool checkpoint_due = options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0;
    if (step_ % options_.check_every == 0 && !last_possible && !checkpoint_due)
      check_parameters("after " + where(step_, false));  // (a checkpoint looks at them itself)
    const double dt = now_seconds() - t0;
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

    // --max-time: stop when another step of this one's length would run past it.
    bool stop_early = step_ < total && ((options_.max_time > 0 && elapsed() + dt >= options_.max_time) ||
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
    if ((options_.eval_every > 0 && step_ % options_.eval_every == 0) || last)
      if (hooks.evaluate) add_record(hooks.evaluate(step_));
    if (checkpoint_due || last) {
      checkpoint(step_);
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
  }
  progress_.clear();
  summary.final_step = step_;
  summary.seconds = elapsed();
  summary.last_checkpoint = last_checkpoint_;
  return summary;
}

}  // namespace lowrank::train
