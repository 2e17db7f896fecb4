// `lowrank train-mlp`: trains the Fashion-MNIST MLP (Keras protocol: Adam 1e-3, batch 32, sparse
// cross-entropy from logits); flags and the summary, the run is train::run_train_mlp.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/io/fashion_mnist.h"
#include "tools/cli/command.h"
#include "tools/cli/flags.h"
#include "tools/dist/dist.h"
#include "tools/train/mlp.h"

namespace lowrank::cli {
namespace {

struct TrainMlpFlags {
  train::MlpTrainOptions o;
  bool quiet = false;
};

}  // namespace

RunFn register_train_mlp(CLI::App& app) {
  auto* sub = app.add_subcommand("train-mlp",
                                 "train the Fashion-MNIST MLP (Flatten -> Dense 128 relu -> Dense 128 "
                                 "relu -> Dense 10) with Adam");
  auto f = std::make_shared<TrainMlpFlags>();
  train::MlpTrainOptions& o = f->o;
  o.data_dir = io::kFashionMnistDefaultDir;
  sub->add_option("--data", o.data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_option("--epochs", o.epochs, "total epochs (a resumed run counts the ones already done)")
      ->check(positive_int())
      ->capture_default_str();
  sub->add_option("--batch", o.batch, "batch size")->check(positive_int())->capture_default_str();
  sub->add_option("--lr", o.lr, "Adam learning rate")->check(positive_number())->capture_default_str();
  sub->add_option("--seed", o.seed, "seed of the initial weights and of the shuffling")
      ->check(unsigned_int())
      ->capture_default_str();
  add_device_option(sub, o.device);
  add_run_folder_options(sub, o.out_dir, o.resume, o.overwrite, train::kMlpDefaultOut);
  add_threads_option(sub, o.threads);
  sub->add_option("--train-limit", o.train_limit, "use only the first N training samples (0: all)")
      ->check(non_negative_int());
  sub->add_option("--test-limit", o.test_limit, "use only the first N test samples (0: all)")
      ->check(non_negative_int());
  add_json_flag(sub, o.json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    train::MlpTrainOptions o = f->o;
    o.progress = o.log = !f->quiet;
    const train::MlpTrainResult r = train::run_train_mlp(o);
    if (!dist::is_leader()) return kExitOk;  // (mpirun) rank 0 reports
    const train::EpochMetrics& last = r.history.back();
    const int64_t run_epochs = static_cast<int64_t>(r.history.size()) - r.start_epoch;
    if (o.json) {
      nlohmann::json history = nlohmann::json::array();
      for (const train::EpochMetrics& m : r.history) history.push_back(train::epoch_metrics_json(m));
      nlohmann::json j{{"epochs", last.epoch},
                       {"resumed_from_epoch", r.start_epoch},
                       {"test_acc", last.test_acc},
                       {"test_loss", last.test_loss},
                       {"train_acc", last.train_acc},
                       {"train_loss", last.train_loss},
                       {"seconds", r.seconds},
                       {"ranks", dist::size()},
                       {"allreduce_seconds", r.allreduce_seconds},
                       {"seconds_per_epoch", run_epochs > 0 ? r.seconds / static_cast<double>(run_epochs) : 0.0},
                       {"seed", o.seed},
                       {"device", o.device},
                       {"history", history},
                       {"outputs",
                        {{"model", r.model_path},
                         {"optimizer", r.optimizer_path},
                         {"metrics", r.metrics_path},
                         {"config", r.config_path},
                         {"loss_curve", r.loss_curve_path},
                         {"accuracy_curve", r.accuracy_curve_path},
                         {"checkpoint", r.checkpoint_dir}}}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("test accuracy %.4f, test loss %.4f after %lld epochs (seed %llu, %.1f s); outputs in %s\n",
                  last.test_acc, last.test_loss, static_cast<long long>(last.epoch),
                  static_cast<unsigned long long>(o.seed), r.seconds, r.out_dir.c_str());
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli
