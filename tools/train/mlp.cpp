// The `train-mlp` run on the trainer: data, model, Adam, per-epoch test evaluation, checkpoints,
// metrics, curves; and the classifier step it shares with lora-experiment.
#include "tools/train/mlp.h"

#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "analysis/plot.h"
#include "core/io/fashion_mnist.h"
#include "core/io/safetensors.h"
#include "nn/loss.h"
#include "optim/adam.h"
#include "tools/train/clock.h"
#include "tools/train/setup.h"

namespace lowrank::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kCmd = "train-mlp";
constexpr int64_t kEvalBatch = 1000;
// The loss and accuracy curves are redrawn after an epoch when this long has passed since they
// last were, and always after the last epoch: drawing the two PNGs takes 33-45 ms, a tenth of a
// 2-thread epoch when it was done after every one. metrics.jsonl gets every epoch as it ends.
constexpr double kCurvesEverySeconds = 10.0;

// The shuffle stream must not reuse the Philox counters that drew the initial weights under
// the same key, so the loader gets its own seed derived from --seed.
uint64_t loader_seed(uint64_t seed) {
  return seed ^ 0x9E3779B97F4A7C15ull;
}

json config_json(const MlpTrainOptions& o, const std::string& out, const models::MlpConfig& mc) {
  return json{{"command", "train-mlp"},
              {"data", o.data_dir},
              {"epochs", o.epochs},
              {"batch", o.batch},
              {"lr", o.lr},
              {"seed", o.seed},
              {"loader_seed", loader_seed(o.seed)},
              {"device", o.device},
              {"out", out},
              {"resume", o.resume},
              {"threads", o.threads},
              {"json", o.json},
              {"train_limit", o.train_limit},
              {"test_limit", o.test_limit},
              {"optimizer", {{"name", "adam"}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", optim::kKerasAdamEps}}},
              {"loss", "sparse_categorical_crossentropy_from_logits"},
              {"model",
               {{"inputs", mc.inputs},
                {"hidden", mc.hidden},
                {"classes", mc.classes},
                {"activation", "relu"},
                {"kernel_init", mc.kernel_init.name()},
                {"bias_init", mc.bias_init.name()}}}};
}

EpochMetrics epoch_from_json(const json& j) {
  try {
    return EpochMetrics{j.at("epoch").get<int64_t>(),    j.at("train_loss").get<double>(),
                        j.at("train_acc").get<double>(), j.at("test_loss").get<double>(),
                        j.at("test_acc").get<double>(),  j.at("seconds").get<double>()};
  } catch (const std::exception& e) {
    LR_FAIL("train-mlp: a metrics record is not an epoch record ({}): {}", e.what(), j.dump());
  }
}

// Chance for `classes` classes (accuracy 1/classes; cross-entropy ln(classes), a uniform guess) as a
// dashed line when the curves keep at least a quarter of the figure's height with it, else as a
// caption line: a trained model's curves sit far from chance, and a line there would squeeze them
// into a sliver.
void add_chance(analysis::LineOptions& lo, const std::vector<analysis::Series>& series, double level,
                const std::string& what, int64_t classes) {
  double lo_y = std::numeric_limits<double>::infinity(), hi_y = -lo_y;
  for (const analysis::Series& s : series)
    for (double y : s.y) lo_y = std::min(lo_y, y), hi_y = std::max(hi_y, y);
  const double span = std::max(hi_y - lo_y, 1e-9);
  if (level >= lo_y - 3 * span && level <= hi_y + 3 * span) {
    lo.hlines.push_back({detail::format("chance ({} classes)", classes), level});
    lo.legend_outside = true;  // the frame's corners may hold the line
  } else
    lo.notes.push_back(detail::format("chance ({} classes): {} {}, {} the plotted range", classes, what,
                                      fixed(level, 3), level < lo_y ? "below" : "above"));
}

// Loss and accuracy live on different scales, so each gets its own figure.
void write_curves(const std::string& loss_path, const std::string& acc_path, const std::vector<EpochMetrics>& h,
                  int64_t classes) {
  analysis::Series tl{"train", {}, {}}, vl{"test", {}, {}}, ta{"train", {}, {}}, va{"test", {}, {}};
  for (const EpochMetrics& m : h) {
    double e = static_cast<double>(m.epoch);
    tl.x.push_back(e), tl.y.push_back(m.train_loss);
    vl.x.push_back(e), vl.y.push_back(m.test_loss);
    ta.x.push_back(e), ta.y.push_back(m.train_acc);
    va.x.push_back(e), va.y.push_back(m.test_acc);
  }
  analysis::LineOptions loss;
  loss.x_label = "epoch";
  loss.markers = true;
  analysis::LineOptions acc = loss;
  loss.title = "MLP on Fashion-MNIST: loss";
  loss.y_label = "cross-entropy";
  add_chance(loss, {tl, vl}, std::log(static_cast<double>(classes)),
             "cross-entropy ln " + std::to_string(classes) + " =", classes);
  analysis::plot_lines(loss_path, {tl, vl}, loss);
  acc.title = "MLP on Fashion-MNIST: accuracy";
  acc.y_label = "accuracy";
  add_chance(acc, {ta, va}, 1.0 / static_cast<double>(classes), "accuracy", classes);
  analysis::plot_lines(acc_path, {ta, va}, acc);
}

}  // namespace

StepOutput classifier_step(nn::Module& model, io::DataLoader& loader, const DataParallel* dp) {
  std::optional<io::Batch> batch = loader.next();
  if (!batch) batch = loader.next();  // the epoch ended: the next one starts
  LR_CHECK(batch.has_value(), "classifier_step: the data loader has no batches");
  const bool sharded = dp && dp->active();
  const Tensor x = sharded ? dp->local((*batch)[0]) : (*batch)[0];
  const Tensor y = sharded ? dp->local((*batch)[1]) : (*batch)[1];
  Tensor logits = model(x);
  StepOutput out;
  Tensor loss = nn::CrossEntropyLoss()(logits, y);
  out.weight = static_cast<double>(y.size(0));
  out.samples = y.size(0);
  nn::Accuracy acc;
  acc.update(logits, y);
  out.sums["correct"] = static_cast<double>(acc.correct());
  if (sharded) return dp->combine(loss, y.size(0), batch->size(), std::move(out));
  out.loss = loss;
  return out;
}

void keep_freed_memory_for_reuse() {
  constexpr int kThreshold = 1 << 30;  // 1 GiB: above any activation or gradient trained here
  mallopt(M_MMAP_THRESHOLD, kThreshold);
  mallopt(M_TRIM_THRESHOLD, kThreshold);
}

json epoch_metrics_json(const EpochMetrics& m) {
  return json{{"epoch", m.epoch},         {"train_loss", m.train_loss}, {"train_acc", m.train_acc},
              {"test_loss", m.test_loss}, {"test_acc", m.test_acc},     {"seconds", m.seconds}};
}

MlpTrainResult run_train_mlp(const MlpTrainOptions& o) {
  if (o.epochs < 1) usage_error("train-mlp: --epochs must be at least 1, got {}", o.epochs);
  if (o.batch < 1) usage_error("train-mlp: --batch must be at least 1, got {}", o.batch);
  if (!(std::isfinite(o.lr) && o.lr > 0)) usage_error("train-mlp: --lr must be a positive number, got {}", o.lr);
  if (o.train_limit < 0 || o.test_limit < 0) usage_error("train-mlp: sample limits must be >= 0");
  const Device device = setup_device(o.device, o.threads, kCmd);

  LR_CHECK(fs::is_directory(o.data_dir),
           "train-mlp: data folder '{}' does not exist (tools/setup installs Fashion-MNIST into {})", o.data_dir,
           io::kFashionMnistDefaultDir);
  MlpTrainResult r;
  r.out_dir = run_dir_for(o.out_dir, o.resume, kMlpDefaultOut);
  RunFolder run(r.out_dir, {.command = kCmd, .resume = o.resume, .overwrite = o.overwrite});
  dist::barrier();  // (mpirun) every rank has looked at the folder before the leader writes to it

  io::FashionMnist data = io::load_fashion_mnist(o.data_dir);
  auto limit = [](Tensor& t, int64_t n) {
    if (n > 0 && n < t.size(0)) t = t.narrow(0, 0, n);
  };
  limit(data.train_images, o.train_limit);
  limit(data.train_labels, o.train_limit);
  limit(data.test_images, o.test_limit);
  limit(data.test_labels, o.test_limit);
  LR_CHECK(data.train_labels.size(0) > 0, "train-mlp: the training split in {} has no samples", o.data_dir);
  LR_CHECK(data.test_labels.size(0) > 0, "train-mlp: the test split in {} has no samples", o.data_dir);
  DataParallel dp(o.data_parallel);
  dp.check_batch(kCmd, o.batch, data.train_labels.size(0) % o.batch);

  const fs::path out(r.out_dir);
  r.model_path = (out / "model.safetensors").string();
  r.optimizer_path = (out / "optimizer.safetensors").string();
  r.metrics_path = (out / kMetricsFile).string();
  r.config_path = (out / "config.json").string();
  r.loss_curve_path = (out / "training_loss.png").string();
  r.accuracy_curve_path = (out / "training_accuracy.png").string();

  models::MlpConfig mc;
  nn::Generator gen(o.seed);
  r.model = std::make_shared<models::Mlp>(mc, gen);
  r.model->to(device);
  optim::Adam adam(r.model->named_parameters(), {.lr = o.lr, .eps = optim::kKerasAdamEps});
  io::DataLoader loader(
      {data.train_images, data.train_labels},
      {.batch_size = o.batch, .shuffle = true, .drop_last = false, .seed = loader_seed(o.seed), .device = device});
  const int64_t per_epoch = loader.num_batches();

  Trainer trainer(adam,
                  {.command = kCmd,
                   .total_steps = o.epochs * per_epoch,
                   .steps_per_epoch = per_epoch,
                   .total_flag = "--epochs",
                   .log_every = per_epoch,
                   .eval_every = per_epoch,
                   .checkpoint_every = per_epoch,
                   .progress = o.progress,
                   .leader = dp.leader()},
                  &run);
  models::Mlp& model = *r.model;
  double epoch_start = 0;  // an epoch's seconds: its steps and its test evaluation
  trainer.hooks.forward = [&](int64_t step) {
    if (step % per_epoch == 0) epoch_start = now_seconds();
    return classifier_step(model, loader, &dp);
  };
  trainer.hooks.save = [&](CheckpointWriter& w) {
    const std::string epoch = std::to_string(w.step() / per_epoch);
    model.save(w.path("model.safetensors"),
               {{"format", "lowrank-mlp"}, {"epoch", epoch}, {"seed", std::to_string(o.seed)}});
    const io::DataLoaderState ls = loader.state();
    w.state() = json{{"loader", {{"seed", ls.seed}, {"epoch", ls.epoch}, {"position", ls.position}}},
                     {"steps_per_epoch", per_epoch},
                     {"seed", o.seed}};
  };
  trainer.hooks.load = [&](const Checkpoint& c) {
    model.load(c.file("model.safetensors"));
    const json& s = c.state();
    LR_CHECK(s.value("steps_per_epoch", int64_t{-1}) == per_epoch,
             "the checkpoint has {} batches per epoch, this run {} (--batch and --train-limit must match the run's)",
             s.value("steps_per_epoch", int64_t{-1}), per_epoch);
    try {
      const json& l = s.at("loader");
      loader.load_state({l.at("seed").get<uint64_t>(), l.at("epoch").get<int64_t>(), l.at("position").get<int64_t>()});
    } catch (const json::exception& e) {
      LR_FAIL("{} has no data loader state ({})", kTrainerStateFile, e.what());
    }
  };

  IntervalStats epoch_train;
  std::vector<EpochMetrics> history;
  trainer.hooks.log = [&](const IntervalStats& s) -> std::optional<json> {
    epoch_train = s;
    return std::nullopt;  // the epoch's record waits for the test evaluation
  };
  auto prepare = [device](const Tensor& x) { return x.device() == device ? x : x.to(device); };
  double curves_written = now_seconds();
  trainer.hooks.evaluate = [&](int64_t step) -> std::optional<json> {
    nn::EvalResult test = nn::evaluate_classifier(model, data.test_images, data.test_labels, kEvalBatch, prepare);
    EpochMetrics m{
        step / per_epoch,
        epoch_train.loss,
        epoch_train.samples > 0 ? epoch_train.sums["correct"] / static_cast<double>(epoch_train.samples) : 0.0,
        test.loss,
        test.accuracy,
        now_seconds() - epoch_start};
    history.push_back(m);
    if (dp.leader() && (step == o.epochs * per_epoch || now_seconds() - curves_written >= kCurvesEverySeconds)) {
      write_curves(r.loss_curve_path, r.accuracy_curve_path, history, mc.classes);
      curves_written = now_seconds();
    }
    if (o.log)
      trainer.print(detail::format("epoch {}/{}  train loss {} acc {}  test loss {} acc {}  {} s", m.epoch, o.epochs,
                                   fixed(m.train_loss, 4), fixed(m.train_acc, 4), fixed(m.test_loss, 4),
                                   fixed(m.test_acc, 4), fixed(m.seconds, 1)));
    return epoch_metrics_json(m);
  };
  trainer.hooks.progress_text = [&](const IntervalStats& s) {
    const double acc = s.samples > 0 ? s.sums.at("correct") / static_cast<double>(s.samples) : 0.0;
    return detail::format("epoch {}/{} {}/{} loss {} acc {} {} samples/s", (s.step - 1) / per_epoch + 1, o.epochs,
                          (s.step - 1) % per_epoch + 1, per_epoch, fixed(s.loss, 4), fixed(acc, 4),
                          fixed(static_cast<double>(s.samples) / std::max(s.step_seconds, 1e-9), 0));
  };

  if (run.resume_from()) {
    r.start_epoch = trainer.restore(*run.resume_from()) / per_epoch;
    for (const json& j : trainer.history()) history.push_back(epoch_from_json(j));
  }
  if (dp.leader()) run.write_text("config.json", config_json(o, r.out_dir, mc).dump(2) + "\n");
  dp.attach(trainer, model.named_parameters());
  model.train();
  TrainSummary s = trainer.run();
  r.history = history;
  r.seconds = s.seconds;
  r.allreduce_seconds = dp.sync().seconds();
  r.checkpoint_dir = s.last_checkpoint;
  return r;
}

}  // namespace lowrank::train
