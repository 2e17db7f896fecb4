// The training loop of every lowrank tool (lowrank_train): one loop with hooks for the step, the
// log, the evaluation and the checkpoint; a run folder with atomic checkpoints, metrics.jsonl and
// a bit-identical resume; one progress line; one NaN/Inf guard that looks at the loss of every
// step and at the parameters after it, and stops keeping the last good checkpoint.
//
// A loop, written with it (model, data and evaluation are the caller's):
//
//   train::RunFolder run(out_dir, {.command = "my-train", .resume = resume_flag});
//   optim::AdamW opt(optim::ParamGroups{{"decay", matrices}, {"no_decay", biases, std::nullopt, 0.0}}, {.lr = 1e-3});
//   opt.set_schedule(optim::LrSchedule::cosine(1e-3, 100, steps, 1e-4));  // scales each group's lr
//   train::Trainer trainer(opt, {.command = "my-train", .total_steps = steps, .log_every = 10,
//                                .eval_every = 50, .checkpoint_every = 100, .grad_clip = 1.0}, &run);
//   trainer.hooks.forward = [&](int64_t step) {            // the loss of optimizer step `step` + 1
//     Batch b = batch_for(step);                             // a pure function of the step: resumable
//     train::StepOutput out;
//     out.loss = model.loss(b.x, b.y), out.tokens = b.tokens();
//     return out;
//   };
//   trainer.hooks.log = [&](const train::IntervalStats& s) {  // -> a metrics.jsonl record
//     trainer.print(detail::format("step {} loss {}", s.step, s.loss));
//     return nlohmann::json{{"step", s.step}, {"train_loss", s.loss}};
//   };
//   trainer.hooks.evaluate = [&](int64_t step) { return nlohmann::json{{"step", step}, {"val_loss", val()}}; };
//   trainer.hooks.save = [&](train::CheckpointWriter& w) { model.save(w.path("model.safetensors")); };
//   trainer.hooks.load = [&](const train::Checkpoint& c) { model.load(c.file("model.safetensors")); };
//   if (run.resume_from()) trainer.restore(*run.resume_from());
//   train::TrainSummary s = trainer.run();
//
// Other loops plug in through the hooks: a LoRA run advances its base-scale schedule in
// `before_step` and exports its adapter in `save` (RunFolderOptions::exports names the files
// linked into the run folder); data-parallel training all-reduces gradients in `after_backward`
// (before clipping and the update) and passes `leader = false` on every rank but one, which then
// write no files and print nothing (every rank must still take the same stop decisions: give
// them the same max_time decisions, e.g. by broadcasting the leader's).
//
// max_time is a budget for the whole run, not for its steps alone: run() returns within max_time
// seconds of `started_at` (a command passes the moment it began, so loading counts too), its last
// evaluation and checkpoint included. Each step, evaluation and checkpoint is timed as it happens;
// after each step the run goes on only if the evaluation and checkpoint due at that step, one more
// step (the longest of the last few), and then the final evaluation and checkpoint (the longest
// measured of each) still fit. A fresh run with max_time times both before they matter: it
// evaluates before its first step (as eval_at_start does) and commits a checkpoint after it. The
// measured times travel with the checkpoints, so a resumed run knows them (one resumed from a
// checkpoint without them reckons each as one step until it has measured it). The first step of a
// run is always taken.
#pragma once
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "optim/optimizer.h"
#include "tools/train/progress.h"
#include "tools/train/run_folder.h"

namespace lowrank::train {

// What the forward pass of one step gives back.
struct StepOutput {
  Tensor loss;          // a scalar: backward starts here
  double weight = 1.0;  // what the loss is a mean over (e.g. samples): an interval's loss weighs steps by it
  int64_t samples = 0;  // examples in the batch (for samples/s; 0: not counted)
  int64_t tokens = 0;   // tokens in the batch (for tokens/s; 0: not counted)
  std::map<std::string, double> sums;  // summed over the log interval (e.g. {"correct", 27})
};

// What the steps of one log interval (or the running one, for the progress line) added up to.
struct IntervalStats {
  int64_t step = 0;   // optimizer steps done at the end of the interval
  int64_t steps = 0;  // steps in the interval
  double loss = 0;    // mean loss, each step weighted by its StepOutput::weight
  double weight = 0;
  int64_t samples = 0, tokens = 0;
  std::map<std::string, double> sums;
  double lr = 0;            // the rate the interval's last step used (group 0)
  double step_seconds = 0;  // time inside the interval's steps (forward, backward, update)
  double seconds = 0;       // wall time of the run so far, counting the runs before a resume
};

struct TrainerOptions {
  std::string command;                 // the subcommand, for messages ("gpt2 train")
  int64_t total_steps = 0;             // the run ends after this optimizer step; a resumed run counts those done
  int64_t steps_per_epoch = 0;         // > 0: messages place steps in epochs ("epoch 2, step 3")
  std::string total_flag = "--steps";  // the flag that sets total_steps, for "ask for more with ..."
  int64_t stop_at = 0;                 // > 0: stop after this step, with a checkpoint; schedules still span total_steps
  double max_time = 0;                 // > 0: run() returns within this many seconds of started_at (see above)
  double started_at = NAN;             // the clock reading max_time counts from (NaN: when run() begins)
  double evaluations_after = 0;        // evaluations' worth of time the caller needs after a run that reaches
                                       // total_steps (e.g. scoring a test split), kept within max_time
  int64_t log_every = 0;               // steps per log interval (0: one interval, ending with the run)
  int64_t eval_every = 0;              // steps between evaluations (0: at the end only)
  bool eval_at_start = false;          // also evaluate before the first step of a fresh run (max_time does too)
  int64_t checkpoint_every = 0;        // steps between checkpoints (0: at the end only); needs a run folder
  double grad_clip = 0;                // > 0: clip the global gradient norm of the optimizer's parameters to it
  // Steps between looks at the parameters for NaN or infinity; they are always looked at before a
  // checkpoint, at the end, and when a run starts. The default, every step, costs the MLP ~3-6 us
  // of a ~180-290 us step (bench/optim_bench BM_GuardScanMlp: the scan runs on every thread, each
  // over the part of each tensor the optimizer's kernel gave it); the loss is looked at every step
  // regardless.
  int64_t check_every = 1;
  bool progress = true;  // the progress line (drawn only when stderr is a terminal)
  bool leader = true;    // data-parallel: only the leader writes files and prints
  // Seconds on a monotonic clock (empty: now_seconds); tests inject a fake one.
  std::function<double()> clock = nullptr;
};

struct Hooks {
  // Required: the loss of the step that follows `step` steps done (0-based). The batch should be
  // a pure function of the step or of state that `save` stores, so that a resume repeats it.
  std::function<StepOutput(int64_t step)> forward;
  // Before each forward (e.g. a LoRA base-scale schedule at `step`).
  std::function<void(int64_t step)> before_step;
  // After backward, before clipping and the update (e.g. a gradient all-reduce).
  std::function<void()> after_backward;
  // At the end of each log interval: a metrics record to keep, or nullopt.
  std::function<std::optional<nlohmann::json>(const IntervalStats&)> log;
  // At evaluation steps (and step 0 with eval_at_start): a metrics record to keep, or nullopt.
  std::function<std::optional<nlohmann::json>(int64_t step)> evaluate;
  // Writes what a resume needs besides the optimizer (which the trainer saves): the model, and
  // in CheckpointWriter::state() the run's own state (a data loader's position, random streams).
  std::function<void(CheckpointWriter&)> save;
  // Restores what `save` wrote.
  std::function<void(const Checkpoint&)> load;
  // Data-parallel: given this rank's decision to stop early (--max-time), returns the one every
  // rank takes (the leader's): train::DataParallel sets it.
  std::function<bool(bool stop)> agree_stop;
  // The progress line's text after each step (default: "step s/N loss x").
  std::function<std::string(const IntervalStats& running)> progress_text;
};

struct TrainSummary {
  int64_t start_step = 0, final_step = 0;
  bool stopped_early = false;       // by max_time or stop_at
  double seconds = 0;               // this run's wall time (evaluations and checkpoints included)
  double step_seconds = 0;          // this run's time inside steps
  int64_t samples = 0, tokens = 0;  // this run's
  std::string last_checkpoint;      // the folder of the last checkpoint this run committed (empty: none)
};

class Trainer {
 public:
  // `run` (optional) receives metrics.jsonl and the checkpoints; without one nothing is written.
  Trainer(optim::Optimizer& optimizer, TrainerOptions options, RunFolder* run = nullptr);

  Hooks hooks;

  // Continues from `checkpoint`: loads the optimizer, the metrics history and the run's state
  // (hooks.load), checks the parameters, and returns the step it holds. Refuses a checkpoint of
  // another subcommand and one that has done total_steps already. Call before run().
  int64_t restore(const Checkpoint& checkpoint);
  // Trains from the restored step (or 0) to total_steps, stop_at or max_time. A NaN or infinite
  // loss or parameter throws lowrank::Error after clearing the progress line; the message says
  // where the last good checkpoint is.
  TrainSummary run();

  // Every metrics record, including those of the runs before a resume.
  const std::vector<nlohmann::json>& history() const { return history_; }
  // Seconds of training before this run (from the checkpoint resumed).
  double prior_seconds() const { return prior_seconds_; }
  // Seconds since run() began.
  double run_seconds() const;
  // The seconds the longest evaluation and checkpoint of this run (or of the runs before a resume)
  // took; NaN until one is measured.
  double evaluation_seconds() const { return evaluation_seconds_; }
  double checkpoint_seconds() const { return checkpoint_seconds_; }
  int64_t step() const { return step_; }
  const TrainerOptions& options() const { return options_; }
  optim::Optimizer& optimizer() { return optimizer_; }
  // A log line on stderr (the leader's only) that does not collide with the progress line.
  void print(const std::string& line);
  // "step 7", or "epoch 2, step 3" with steps_per_epoch; `done`: the position after `step` steps
  // ("epoch 2" at an epoch's end).
  std::string where(int64_t step, bool done) const;

 private:
  [[noreturn]] void stop_on_bad_value(const std::string& what_went_wrong) const;
  void check_parameters(const std::string& when) const;
  void checkpoint(int64_t step);
  void evaluate(int64_t step);
  void add_record(std::optional<nlohmann::json> record);
  double now() const;
  // Whether the work due after this step, one more step and the final evaluation and checkpoint
  // would pass max_time (see the top of this file).
  bool out_of_time(double step_estimate, bool evaluation_due, bool checkpoint_due) const;

  optim::Optimizer& optimizer_;
  TrainerOptions options_;
  RunFolder* run_;
  ProgressLine progress_;
  std::vector<nlohmann::json> history_;
  double prior_seconds_ = 0, run_start_ = 0, budget_start_ = 0;
  double evaluation_seconds_ = NAN, checkpoint_seconds_ = NAN;
  std::deque<double> recent_steps_;  // the seconds of the last few steps, with their log and metrics writes
  int64_t step_ = 0, start_step_ = 0;
  std::optional<Checkpoint> restored_;
  std::string last_checkpoint_;
  int64_t last_checkpoint_step_ = -1;
  bool records_dirty_ = false;
};

}  // namespace lowrank::train
