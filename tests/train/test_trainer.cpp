// train::Trainer's --max-time budget, on a fake clock that the hooks move: each step, evaluation
// and checkpoint "takes" as long as the test says, so nothing here depends on how busy the machine
// is. The budget covers the whole run, its final evaluation and checkpoint included; counts from
// started_at (loading counts); travels with a resume; and without max_time nothing changes.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "optim/sgd.h"
#include "support/files.h"
#include "tools/train/run_folder.h"
#include "tools/train/trainer.h"

namespace lowrank {
namespace {

using train::TrainerOptions;

// What the fake clock charges for each piece of work (seconds).
struct Costs {
  double step = 1, evaluation = 5, checkpoint = 3;
};

// One weight vector pulled towards 1 by SGD, trained with hooks that move a fake clock.
class FakeRun {
 public:
  FakeRun(const std::string& dir, Costs costs, const std::string& resume = "")
      : costs_(costs),
        w_(Tensor::from_vector(std::vector<float>{0.5f, -1.0f, 2.0f, 0.25f}, {4})),
        run_(dir, {.command = "test", .resume = resume, .exports = {"w.safetensors"}}) {
    w_.requires_grad_();
    opt_ = std::make_unique<optim::SGD>(optim::NamedParameters{{"w", w_}}, optim::SgdOptions{.lr = 0.05});
  }

  // A trainer with the fake clock and hooks that charge it; `options` says the rest.
  std::unique_ptr<train::Trainer> trainer(TrainerOptions options) {
    options.command = "test";
    options.progress = false;
    options.clock = [this] { return now; };
    auto t = std::make_unique<train::Trainer>(*opt_, std::move(options), &run_);
    t->hooks.forward = [this](int64_t) {
      now += costs_.step;
      const Tensor d = sub(w_, 1.0);
      train::StepOutput out;
      out.loss = sum(mul(d, d));
      return out;
    };
    t->hooks.evaluate = [this](int64_t step) -> std::optional<nlohmann::json> {
      now += costs_.evaluation;
      evaluated.push_back(step);
      return nlohmann::json{{"step", step}, {"val_loss", 0.0}};
    };
    t->hooks.save = [this](train::CheckpointWriter& w) {
      now += costs_.checkpoint;
      saved.push_back(w.step());
      io::save_safetensors(w.path("w.safetensors"), {{"w", w_}});
    };
    t->hooks.load = [this](const train::Checkpoint& c) {
      NoGradGuard no_grad;
      w_.copy_(io::load_safetensors(c.file("w.safetensors")).tensors.at("w"));
    };
    if (run_.resume_from()) t->restore(*run_.resume_from());
    return t;
  }

  std::vector<float> weights() const { return w_.to_vector<float>(); }

  double now = 0;                         // the fake clock
  std::vector<int64_t> evaluated, saved;  // the steps of each evaluation and checkpoint

 private:
  Costs costs_;
  Tensor w_;
  train::RunFolder run_;
  std::unique_ptr<optim::SGD> opt_;
};

TEST(TrainerMaxTime, EndsWithinTheBudgetWithItsFinalEvaluationAndCheckpoint) {
  test::TempDir dir;
  FakeRun r(dir.path().string(), {});
  r.now = 4;  // loading the model and the data took 4 s of the budget
  const double max_time = 58.5;
  auto t = r.trainer({.command = "test",
                      .total_steps = 1000,
                      .max_time = max_time,
                      .started_at = 0,
                      .eval_every = 10,
                      .eval_at_start = true});
  const train::TrainSummary s = t->run();

  EXPECT_TRUE(s.stopped_early);
  EXPECT_LE(r.now, max_time) << "the run ends within --max-time, the final evaluation and checkpoint included";
  // ... and does not stop while one more step and that final work would still have fitted.
  EXPECT_GT(r.now + Costs{}.step + Costs{}.evaluation + Costs{}.checkpoint, max_time);
  ASSERT_FALSE(r.evaluated.empty());
  ASSERT_FALSE(r.saved.empty());
  EXPECT_EQ(r.evaluated.back(), s.final_step);  // the final evaluation and checkpoint are of the last step
  EXPECT_EQ(r.saved.back(), s.final_step);
  EXPECT_EQ(r.saved.front(), 1) << "with no checkpoint timed yet, one after the first step times it";
  EXPECT_DOUBLE_EQ(t->evaluation_seconds(), Costs{}.evaluation);
  EXPECT_DOUBLE_EQ(t->checkpoint_seconds(), Costs{}.checkpoint);
}

TEST(TrainerMaxTime, ASlowCheckpointIsTimedBeforeTheEnd) {
  // A checkpoint 20 times a step: the one after step 1 measures it, so the end still fits.
  test::TempDir dir;
  FakeRun r(dir.path().string(), {.step = 0.5, .evaluation = 2, .checkpoint = 10});
  const double max_time = 40.25;
  auto t = r.trainer({.command = "test", .total_steps = 1000, .max_time = max_time, .started_at = 0});
  const train::TrainSummary s = t->run();
  EXPECT_TRUE(s.stopped_early);
  EXPECT_LE(r.now, max_time);
  EXPECT_GT(r.now + 0.5 + 2 + 10, max_time);
  EXPECT_EQ(r.saved, (std::vector<int64_t>{1, s.final_step}));
}

TEST(TrainerMaxTime, CountsFromStartedAt) {
  // Loading took 20 s: a budget counted from the command's start leaves fewer steps than one
  // counted from run() (started_at unset), and each ends within its own budget. (Neither asks for
  // an evaluation at the start: max_time makes one, to time it.)
  test::TempDir dir;
  FakeRun a(dir.file("a"), {}), b(dir.file("b"), {});
  a.now = b.now = 20;
  const double max_time = 60.5;
  const train::TrainSummary sa =
      a.trainer({.command = "test", .total_steps = 1000, .max_time = max_time, .started_at = 0})->run();
  const train::TrainSummary sb = b.trainer({.command = "test", .total_steps = 1000, .max_time = max_time})->run();
  EXPECT_LE(a.now, max_time);
  EXPECT_LE(b.now, 20 + max_time);
  EXPECT_GT(b.now, max_time);
  EXPECT_LT(sa.final_step, sb.final_step);
}

TEST(TrainerMaxTime, KeepsTimeForTheCallersWorkAfterALastStep) {
  // 10 steps fit with their final evaluation and checkpoint (ending at 26 s of 30), but not with
  // two more evaluations after them (36 s): evaluations_after makes the run stop one step short.
  for (const double after : {0.0, 2.0}) {
    test::TempDir dir;
    FakeRun r(dir.path().string(), {});
    const double max_time = 30.5;
    const train::TrainSummary s = r.trainer({.command = "test",
                                             .total_steps = 10,
                                             .max_time = max_time,
                                             .started_at = 0,
                                             .evaluations_after = after,
                                             .eval_at_start = true})
                                      ->run();
    if (after == 0) {
      EXPECT_FALSE(s.stopped_early);
      EXPECT_EQ(s.final_step, 10);
      EXPECT_LE(r.now, max_time);
    } else {
      EXPECT_TRUE(s.stopped_early);  // (so the caller does not score: its time is not needed)
      EXPECT_EQ(s.final_step, 9);
      EXPECT_LE(r.now, max_time);
    }
  }
}

TEST(TrainerMaxTime, WithoutItNothingChanges) {
  // No max_time: every step, checkpoints only where checkpoint_every puts them, and the weights of
  // a run whose budget never binds (which also times a checkpoint after step 1) bit for bit.
  test::TempDir dir;
  FakeRun a(dir.file("a"), {}), b(dir.file("b"), {});
  const TrainerOptions o{.command = "test", .total_steps = 12, .eval_every = 4, .checkpoint_every = 5};
  const train::TrainSummary sa = a.trainer(o)->run();
  TrainerOptions ob = o;
  ob.max_time = 1e9;
  const train::TrainSummary sb = b.trainer(ob)->run();
  EXPECT_FALSE(sa.stopped_early);
  EXPECT_EQ(sa.final_step, 12);
  EXPECT_EQ(a.saved, (std::vector<int64_t>{5, 10, 12}));
  EXPECT_EQ(a.evaluated, (std::vector<int64_t>{4, 8, 12}));
  EXPECT_FALSE(sb.stopped_early);
  EXPECT_EQ(b.saved, (std::vector<int64_t>{1, 5, 10, 12}));
  EXPECT_EQ(b.evaluated, (std::vector<int64_t>{0, 4, 8, 12}));  // (and one before the first step, to time it)
  EXPECT_EQ(a.weights(), b.weights());
}

TEST(TrainerMaxTime, AResumeKnowsTheTimesAndGoesOnBitForBit) {
  test::TempDir tmp;
  const std::string dir = tmp.file("run");
  FakeRun straight(tmp.file("straight"), {});
  straight.trainer({.command = "test", .total_steps = 40})->run();

  const double max_time = 30.5;
  {
    FakeRun first(dir, {});
    const train::TrainSummary s =
        first
            .trainer(
                {.command = "test", .total_steps = 40, .max_time = max_time, .started_at = 0, .eval_at_start = true})
            ->run();
    ASSERT_TRUE(s.stopped_early);
    EXPECT_LE(first.now, max_time);
  }
  // The resumed run has not evaluated or checkpointed yet, but knows what they took, so it takes no
  // timing checkpoint and reserves the final work from its first step on.
  FakeRun second(dir, {}, dir);
  auto t = second.trainer({.command = "test", .total_steps = 40, .max_time = max_time, .started_at = 0});
  EXPECT_DOUBLE_EQ(t->evaluation_seconds(), Costs{}.evaluation);
  EXPECT_DOUBLE_EQ(t->checkpoint_seconds(), Costs{}.checkpoint);
  const train::TrainSummary s2 = t->run();
  EXPECT_LE(second.now, max_time);
  EXPECT_TRUE(second.saved.empty() || second.saved.front() == s2.final_step) << "no checkpoint to time one";

  FakeRun third(dir, {}, dir);
  const train::TrainSummary s3 = third.trainer({.command = "test", .total_steps = 40})->run();
  EXPECT_EQ(s3.final_step, 40);
  EXPECT_EQ(third.weights(), straight.weights()) << "stopping for time changes no step";
}

}  // namespace
}  // namespace lowrank

namespace lowrank {

TEST(Trainer, WhereNamesTheStepInItsEpoch) {
  // 4 steps an epoch: step 6 is the second of epoch 2, before it is taken and after.
  test::TempDir dir;
  FakeRun r(dir.file("run"), {});
  const auto t = r.trainer(TrainerOptions{.command = "test", .total_steps = 8, .steps_per_epoch = 4});
  EXPECT_EQ(t->where(6, false), "epoch 2, step 2");
  EXPECT_EQ(t->where(6, true), "epoch 2, step 2");
  EXPECT_EQ(t->where(1, false), "epoch 1, step 1");
  EXPECT_EQ(t->where(8, true), "epoch 2");  // an epoch's end
  EXPECT_EQ(t->where(8, false), "epoch 2, step 4");
}

}  // namespace lowrank
