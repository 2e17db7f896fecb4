// Training helpers: the progress bar, one classifier epoch, and the `train-mlp` run.
#include "tools/cli/train_common.h"

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "analysis/plot.h"
#include "core/device.h"
#include "core/io/fashion_mnist.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "nn/loss.h"
#include "optim/adam.h"

namespace lowrank::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

int64_t parse_count(const std::map<std::string, std::string>& md, const std::string& key, const std::string& file) {
  auto it = md.find(key);
  LR_CHECK(it != md.end(), "train-mlp: {} has no '{}' metadata (not a train-mlp checkpoint?)", file, key);
  try {
    size_t used = 0;
    long long v = std::stoll(it->second, &used);
    LR_CHECK(used == it->second.size() && v >= 0, "bad");
    return v;
  } catch (const std::exception&) {
    LR_FAIL("train-mlp: {}: metadata '{}' = '{}' is not a count", file, key, it->second);
  }
}

// The shuffle stream must not reuse the Philox counters that drew the initial weights under
// the same key, so the loader gets its own seed derived from --seed.
uint64_t loader_seed(uint64_t seed) {
  return seed ^ 0x9E3779B97F4A7C15ull;
}

json config_json(const MlpTrainOptions& o, const models::MlpConfig& mc) {
  return json{{"command", "train-mlp"},
              {"data", o.data_dir},
              {"epochs", o.epochs},
              {"batch", o.batch},
              {"lr", o.lr},
              {"seed", o.seed},
              {"loader_seed", loader_seed(o.seed)},
              {"device", o.device},
              {"out", o.out_dir},
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

std::vector<EpochMetrics> read_history(const std::string& path, int64_t up_to_epoch) {
  std::vector<EpochMetrics> out;
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      json j = json::parse(line);
      EpochMetrics m{j.at("epoch").get<int64_t>(),    j.at("train_loss").get<double>(), j.at("train_acc").get<double>(),
                     j.at("test_loss").get<double>(), j.at("test_acc").get<double>(),   j.at("seconds").get<double>()};
      if (m.epoch <= up_to_epoch) out.push_back(m);
    } catch (const std::exception& e) {
      LR_FAIL("train-mlp: {}: a line is not an epoch record ({})", path, e.what());
    }
  }
  return out;
}

// Loss and accuracy live on different scales, so each gets its own figure.
void write_curves(const std::string& loss_path, const std::string& acc_path, const std::vector<EpochMetrics>& h) {
  analysis::Series tl{"train", {}, {}}, vl{"test", {}, {}}, ta{"train", {}, {}}, va{"test", {}, {}};
  for (const EpochMetrics& m : h) {
    double e = static_cast<double>(m.epoch);
    tl.x.push_back(e), tl.y.push_back(m.train_loss);
    vl.x.push_back(e), vl.y.push_back(m.test_loss);
    ta.x.push_back(e), ta.y.push_back(m.train_acc);
    va.x.push_back(e), va.y.push_back(m.test_acc);
  }
  analysis::LineOptions lo;
  lo.x_label = "epoch";
  lo.markers = true;
  lo.title = "MLP on Fashion-MNIST: loss";
  lo.y_label = "cross-entropy";
  analysis::plot_lines(loss_path, {tl, vl}, lo);
  lo.title = "MLP on Fashion-MNIST: accuracy";
  lo.y_label = "accuracy";
  analysis::plot_lines(acc_path, {ta, va}, lo);
}

}  // namespace

// ---- ProgressBar

bool ProgressBar::stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

ProgressBar::ProgressBar(std::string label, int64_t total_steps, bool enabled)
    : label_(std::move(label)), total_(total_steps), enabled_(enabled && stderr_is_terminal()), start_(now_seconds()) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t step, int64_t samples, double loss, double acc) {
  if (!enabled_) return;
  double t = now_seconds();
  if (step < total_ && t - last_draw_ < 0.1) return;  // ~10 redraws a second
  last_draw_ = t;
  const double elapsed = t - start_;
  const int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
  double rate = elapsed > 0 ? static_cast<double>(samples) / elapsed : 0.0;
  double eta = step > 0 ? elapsed * static_cast<double>(total_ - step) / static_cast<double>(step) : NAN;
  std::fprintf(stderr, "\r%s [%s] %lld/%lld loss %.4f acc %.4f %.0f samples/s ETA %s\x1b[K", label_.c_str(),
               bar.c_str(), static_cast<long long>(step), static_cast<long long>(total_), loss, acc, rate,
               clock_text(eta).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) {
    std::fprintf(stderr, "\r\x1b[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

// ---- one epoch

EpochStats train_classifier_epoch(nn::Module& model, optim::Optimizer& optimizer, io::DataLoader& loader,
                                  ProgressBar* progress, const std::function<void(int64_t)>& before_step) {
  nn::CrossEntropyLoss cross_entropy;
  nn::MeanMetric loss_mean;
  nn::Accuracy acc;
  EpochStats s;
  model.train();
  while (auto batch = loader.next()) {
    if (before_step) before_step(optimizer.step_count());
    const Tensor& x = (*batch)[0];
    const Tensor& y = (*batch)[1];
    Tensor logits = model(x);
    Tensor loss = cross_entropy(logits, y);
    const double value = loss.item();
    if (!std::isfinite(value)) {
      s.finite = false;
      s.bad_step = s.steps;
      break;
    }
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    loss_mean.update(value, static_cast<double>(batch->size()));
    acc.update(logits, y);
    s.samples += batch->size();
    ++s.steps;
    if (progress) progress->update(s.steps, s.samples, loss_mean.result(), acc.result());
  }
  s.loss = loss_mean.result();
  s.accuracy = acc.result();
  return s;
}

// ---- the train-mlp run

void keep_freed_memory_for_reuse() {
  constexpr int kThreshold = 1 << 30;  // 1 GiB: above any activation or gradient trained here
  mallopt(M_MMAP_THRESHOLD, kThreshold);
  mallopt(M_TRIM_THRESHOLD, kThreshold);
}

std::string epoch_metrics_json(const EpochMetrics& m) {
  return json{{"epoch", m.epoch},         {"train_loss", m.train_loss}, {"train_acc", m.train_acc},
              {"test_loss", m.test_loss}, {"test_acc", m.test_acc},     {"seconds", m.seconds}}
      .dump();
}

MlpTrainResult run_train_mlp(const MlpTrainOptions& o) {
  LR_CHECK(o.epochs >= 1, "train-mlp: --epochs must be at least 1, got {}", o.epochs);
  LR_CHECK(o.batch >= 1, "train-mlp: --batch must be at least 1, got {}", o.batch);
  LR_CHECK(std::isfinite(o.lr) && o.lr > 0, "train-mlp: --lr must be a positive number, got {}", o.lr);
  LR_CHECK(o.threads >= 0, "train-mlp: --threads must be >= 0 (0 = one per core), got {}", o.threads);
  LR_CHECK(o.train_limit >= 0 && o.test_limit >= 0, "train-mlp: sample limits must be >= 0");
  const Device device = Device::parse(o.device);
  if (device.is_cuda())
    LR_CHECK(cuda_available(), "train-mlp: --device {} asked for, but {}", o.device,
             cuda_device_count() == 0 ? "no CUDA device answers (or this build has no CUDA backend)"
                                      : "that device is not available");
  set_num_threads(o.threads);

  LR_CHECK(fs::is_directory(o.data_dir),
           "train-mlp: data folder '{}' does not exist (tools/setup installs Fashion-MNIST into {})", o.data_dir,
           io::kFashionMnistDefaultDir);
  io::FashionMnist data = io::load_fashion_mnist(o.data_dir);
  auto limit = [](Tensor& t, int64_t n) {
    if (n > 0 && n < t.size(0)) t = t.narrow(0, 0, n);
  };
  limit(data.train_images, o.train_limit);
  limit(data.train_labels, o.train_limit);
  limit(data.test_images, o.test_limit);
  limit(data.test_labels, o.test_limit);

  MlpTrainResult r;
  fs::create_directories(o.out_dir);
  const fs::path out(o.out_dir);
  r.model_path = (out / "model.safetensors").string();
  r.optimizer_path = (out / "optimizer.safetensors").string();
  r.metrics_path = (out / "metrics.jsonl").string();
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

  if (!o.resume.empty()) {
    fs::path ckpt(o.resume), dir = ckpt;
    if (fs::is_directory(ckpt))
      ckpt = dir / "model.safetensors";
    else
      dir = ckpt.parent_path();
    LR_CHECK(fs::is_regular_file(ckpt), "train-mlp: --resume {}: no checkpoint file {}", o.resume, ckpt.string());
    const std::string opt_file = (dir / "optimizer.safetensors").string();
    LR_CHECK(fs::is_regular_file(opt_file), "train-mlp: --resume {}: the optimizer state {} is missing", o.resume,
             opt_file);
    auto model_md = r.model->load(ckpt.string());
    auto opt_md = adam.load(opt_file);
    const int64_t model_epoch = parse_count(model_md, "epoch", ckpt.string());
    const int64_t opt_epoch = parse_count(opt_md, "epoch", opt_file);
    LR_CHECK(model_epoch == opt_epoch, "train-mlp: --resume {}: the model is from epoch {} but the optimizer from {}",
             o.resume, model_epoch, opt_epoch);
    loader.load_state(io::dataloader_state_from_metadata(opt_md));
    LR_CHECK(loader.state().epoch == model_epoch && loader.state().position == 0,
             "train-mlp: --resume {}: the loader state (epoch {}, batch {}) is not at the end of epoch {}", o.resume,
             loader.state().epoch, loader.state().position, model_epoch);
    LR_CHECK(model_epoch < o.epochs,
             "train-mlp: --resume {}: the checkpoint has done {} epochs already; ask for more "
             "with --epochs",
             o.resume, model_epoch);
    r.start_epoch = model_epoch;
    r.history = read_history((dir / "metrics.jsonl").string(), model_epoch);
  }
  io::write_file_atomic(r.config_path, config_json(o, mc).dump(2) + "\n");

  auto prepare = [device](const Tensor& x) { return x.device() == device ? x : x.to(device); };
  const double run_start = now_seconds();
  for (int64_t epoch = r.start_epoch + 1; epoch <= o.epochs; ++epoch) {
    const double t0 = now_seconds();
    ProgressBar bar(detail::format("epoch {}/{}", epoch, o.epochs), loader.num_batches(), o.progress);
    EpochStats s = train_classifier_epoch(*r.model, adam, loader, &bar);
    bar.finish();
    if (!s.finite) {
      std::string where = "No epoch finished, so there is no checkpoint";
      if (epoch - 1 > r.start_epoch)
        where = detail::format("The last good checkpoint (epoch {}) is in {}", epoch - 1, o.out_dir);
      else if (r.start_epoch > 0)
        where =
            detail::format("The last good checkpoint (epoch {}) is the one resumed from, {}", r.start_epoch, o.resume);
      LR_FAIL("train-mlp: the loss became NaN or infinite at epoch {}, step {}; training stopped. {}", epoch,
              s.bad_step + 1, where);
    }
    nn::EvalResult test = nn::evaluate_classifier(*r.model, data.test_images, data.test_labels, 1000, prepare);
    EpochMetrics m{epoch, s.loss, s.accuracy, test.loss, test.accuracy, now_seconds() - t0};
    r.history.push_back(m);

    // Optimizer first, model last: a crash in between leaves files whose epochs disagree, which
    // --resume refuses, never a model silently paired with the wrong optimizer state.
    std::map<std::string, std::string> extra = io::to_metadata(loader.state());
    extra["epoch"] = std::to_string(epoch);
    extra["seed"] = std::to_string(o.seed);
    adam.save(r.optimizer_path, extra);
    r.model->save(r.model_path,
                  {{"format", "lowrank-mlp"}, {"epoch", std::to_string(epoch)}, {"seed", std::to_string(o.seed)}});
    std::string lines;
    for (const EpochMetrics& h : r.history) lines += epoch_metrics_json(h) + "\n";
    io::write_file_atomic(r.metrics_path, lines);
    write_curves(r.loss_curve_path, r.accuracy_curve_path, r.history);
    if (o.log)
      std::fprintf(stderr, "epoch %lld/%lld  train loss %.4f acc %.4f  test loss %.4f acc %.4f  %.1f s\n",
                   static_cast<long long>(epoch), static_cast<long long>(o.epochs), m.train_loss, m.train_acc,
                   m.test_loss, m.test_acc, m.seconds);
  }
  r.seconds = now_seconds() - run_start;
  return r;
}

}  // namespace lowrank::cli
