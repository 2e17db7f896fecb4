// `lowrank train-mlp`: trains the Fashion-MNIST MLP (Keras protocol: Adam 1e-3, batch 32, sparse
// cross-entropy from logits) and writes weights, optimizer state, metrics, config and a curve.
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/io/fashion_mnist.h"
#include "tools/cli/command.h"
#include "tools/cli/train_common.h"

namespace lowrank::cli {
namespace {

// CLI11's own range checks print the whole double range; these say what is wanted.
CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          size_t used = 0;
          double v = std::stod(s, &used);
          if (used == s.size() && v > 0 && std::isfinite(v)) return "";
        } catch (const std::exception&) {
        }
        return "must be a positive number, got '" + s + "'";
      },
      "POSITIVE");
}

CLI::Validator non_negative() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          size_t used = 0;
          long long v = std::stoll(s, &used);
          if (used == s.size() && v >= 0) return "";
        } catch (const std::exception&) {
        }
        return "must be a whole number >= 0, got '" + s + "'";
      },
      "NONNEGATIVE");
}

}  // namespace

RunFn register_train_mlp(CLI::App& app) {
  auto* sub = app.add_subcommand("train-mlp",
                                 "train the Fashion-MNIST MLP (Flatten -> Dense 128 relu -> Dense 128 "
                                 "relu -> Dense 10) with Adam");
  auto o = std::make_shared<MlpTrainOptions>();
  o->data_dir = io::kFashionMnistDefaultDir;
  sub->add_option("--data", o->data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  sub->add_option("--epochs", o->epochs, "total epochs (a resumed run counts the ones already done)")
      ->check(positive())
      ->capture_default_str();
  sub->add_option("--batch", o->batch, "batch size")->check(positive())->capture_default_str();
  sub->add_option("--lr", o->lr, "Adam learning rate")->check(positive())->capture_default_str();
  sub->add_option("--seed", o->seed, "seed of the initial weights and of the shuffling")->capture_default_str();
  sub->add_option("--device", o->device, "cpu or cuda[:N]")
      ->check([](const std::string& s) {
        try {
          Device::parse(s);
          return std::string();
        } catch (const std::exception&) {
          return "expected cpu, cuda or cuda:N, got '" + s + "'";
        }
      })
      ->capture_default_str();
  sub->add_option("--out", o->out_dir, "output folder (created)")->capture_default_str();
  sub->add_option("--resume", o->resume, "continue from a run folder (or its model.safetensors)");
  sub->add_option("--threads", o->threads, "CPU threads (0: one per core; 1 is fastest for this small model)")
      ->check(non_negative())
      ->capture_default_str();
  sub->add_option("--train-limit", o->train_limit, "use only the first N training samples (0: all)")
      ->check(non_negative());
  sub->add_option("--test-limit", o->test_limit, "use only the first N test samples (0: all)")->check(non_negative());
  sub->add_flag("--json", o->json, "print one JSON summary object on stdout");
  return [o]() {
    MlpTrainResult r = run_train_mlp(*o);
    const EpochMetrics& last = r.history.back();
    const int64_t run_epochs = static_cast<int64_t>(r.history.size()) - r.start_epoch;
    if (o->json) {
      nlohmann::json history = nlohmann::json::array();
      for (const EpochMetrics& m : r.history) history.push_back(nlohmann::json::parse(epoch_metrics_json(m)));
      nlohmann::json j{{"epochs", last.epoch},
                       {"resumed_from_epoch", r.start_epoch},
                       {"test_acc", last.test_acc},
                       {"test_loss", last.test_loss},
                       {"train_acc", last.train_acc},
                       {"train_loss", last.train_loss},
                       {"seconds", r.seconds},
                       {"seconds_per_epoch", run_epochs > 0 ? r.seconds / static_cast<double>(run_epochs) : 0.0},
                       {"seed", o->seed},
                       {"device", o->device},
                       {"history", history},
                       {"outputs",
                        {{"model", r.model_path},
                         {"optimizer", r.optimizer_path},
                         {"metrics", r.metrics_path},
                         {"config", r.config_path},
                         {"loss_curve", r.loss_curve_path},
                         {"accuracy_curve", r.accuracy_curve_path}}}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("test accuracy %.4f, test loss %.4f after %lld epochs (seed %llu, %.1f s); outputs in %s\n",
                  last.test_acc, last.test_loss, static_cast<long long>(last.epoch),
                  static_cast<unsigned long long>(o->seed), r.seconds, o->out_dir.c_str());
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli
