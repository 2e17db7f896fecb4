// The gpt2 lora-experiment's pieces: the lora variant's training against a float64 PyTorch run of
// the same steps (tests/reference/gpt2_lora_experiment_reference.py), the experiment's own lora
// runs against that training on the experiment's batches, the svd variant at the Eckart–Young
// bound, and the job list.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "analysis/delta_report.h"
#include "analysis/svd.h"
#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/adapter.h"
#include "nn/generator.h"
#include "support/byte_vocab.h"
#include "support/files.h"
#include "support/gpt2.h"
#include "tools/train/gpt2.h"
#include "tools/train/gpt2_experiment.h"

namespace lowrank {
namespace {

namespace mg = models::gpt2;
using train::Gpt2ExperimentJob;
using train::Gpt2ExperimentOptions;

// The reference is float64 and we train in float32: eight steps of a 2-block model stay within
// a few 1e-6 of it; the issue asks for 1e-4.
constexpr double kLossTol = 1e-4;
// The svd variant's error is the bound itself, up to float32 factors (relative 1e-7) in a float64 report.
constexpr double kEckartYoungTol = 1e-5;

TEST(Gpt2Experiment, LoraVariantLossCurveMatchesPyTorch) {
  const io::SafetensorsFile f =
      io::load_safetensors(std::string(LOWRANK_FIXTURES) + "/gpt2_lora_experiment/reference.safetensors");
  const auto& meta = f.metadata;
  Gpt2ExperimentOptions o;
  o.base_scale = std::stod(meta.at("base_scale"));
  o.steps = std::stoll(meta.at("steps"));
  o.lr = std::stod(meta.at("lr"));
  o.min_lr = std::stod(meta.at("min_lr"));
  o.warmup = std::stoll(meta.at("warmup"));
  o.grad_clip = std::stod(meta.at("grad_clip"));
  o.alpha = 0;  // alpha = r, as the reference's scale 1
  o.log = false;
  const Gpt2ExperimentJob job{"lora", std::stoll(meta.at("rank")), 0};
  const int64_t block = std::stoll(meta.at("block"));

  std::unique_ptr<mg::Gpt2> model = train::load_gpt2_model(std::string(LOWRANK_FIXTURES) + "/gpt2", "test");
  mg::Gpt2LoraSpec spec;
  spec.targets = mg::parse_lora_targets(meta.at("targets"));
  spec.layers = {block};
  spec.lora = train::gpt2_experiment_lora(o, job);
  const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(*model, spec);
  ASSERT_EQ(layers.size(), 2u);
  for (const mg::Gpt2LoraLayer& l : layers) {
    const Tensor a = f.tensors.at(l.path + ".lora_A.weight").to(DType::F32);
    l.lora->load_adapter_state({{l.path + ".lora_A.weight", a},
                                {l.path + ".lora_B.weight", Tensor::zeros({l.lora->out_features(), job.rank})}},
                               l.path);
  }
  const Tensor batches = f.tensors.at("batches");  // [steps, B, T + 1]
  const int64_t t = batches.size(2) - 1;
  const std::vector<double> losses = train::train_gpt2_adapters(
      *model, layers, train::gpt2_experiment_training(o, job), Device::cpu(), [&](int64_t step) {
        const Tensor ids = batches.select(0, step);
        return mg::Batch{ids.slice(1, 0, t).contiguous(), ids.slice(1, 1, t + 1).contiguous()};
      });
  const Tensor ref = f.tensors.at("losses");
  ASSERT_EQ(static_cast<int64_t>(losses.size()), ref.numel());
  for (int64_t i = 0; i < ref.numel(); ++i)
    EXPECT_NEAR(losses[static_cast<size_t>(i)], ref.select(0, i).item(), kLossTol) << "step " << i;
  EXPECT_LT(losses.back(), losses.front());  // the curve moves: the comparison is not of a flat line
}

// The experiment end to end, on a 2-block base trained here (byte vocabulary) with block 1 targeted:
// each lora run's recorded loss curve is, bit for bit, train_gpt2_adapters' on the same base and
// adapters fed the batches of the experiment's own sampler, and the adapter it saved is the one that
// training ends with. With LoraVariantLossCurveMatchesPyTorch (train_gpt2_adapters on given batches
// equals PyTorch), the experiment's lora curve is PyTorch's.
TEST(Gpt2Experiment, LoraRunsAreTrainGpt2AdaptersOnTheExperimentsBatches) {
  test::TempDir dir;
  test::write_byte_vocab(dir.path() / "vocab");
  std::ofstream(dir.file("corpus.txt")) << test::warp_corpus(60);
  std::ofstream(dir.file("tiny.json"))
      << R"({"n_layer": 2, "n_head": 2, "n_embd": 16, "n_ctx": 16, "vocab_size": 257, "dropout": 0.0})";
  train::Gpt2TrainOptions t;
  t.config = dir.file("tiny.json"), t.data = {dir.file("corpus.txt")}, t.vocab = dir.file("vocab");
  t.out = dir.file("base"), t.steps = 3, t.batch = 4, t.seq_len = 16, t.val_fraction = 0.2, t.threads = 1;
  t.progress = false, t.log = false;
  train::run_gpt2_train(t);

  Gpt2ExperimentOptions o;
  o.base = dir.file("base"), o.out = dir.file("exp"), o.layers = "1", o.ranks = {2}, o.seeds = {0, 5};
  o.steps = 8, o.warmup = 2, o.batch = 2, o.seq_len = 8, o.lr = 2e-2, o.min_lr = 2e-3, o.val_windows = 4;
  o.threads = 1, o.log = false;
  const train::Gpt2ExperimentResult r = train::run_gpt2_experiment(o);
  Gpt2ExperimentOptions used = r.options;  // as run (the base's split and vocabulary filled in)
  const train::Gpt2ExperimentData data =
      train::load_gpt2_experiment_data(used, *train::load_gpt2_model(o.base, "test"));
  ASSERT_EQ(static_cast<int64_t>(data.tokens.train.size()), r.train_tokens);
  int checked = 0;
  for (const train::Gpt2ExperimentRun& run : r.runs) {
    if (run.job.method != "lora") continue;
    ++checked;
    std::unique_ptr<mg::Gpt2> model = train::load_gpt2_model(o.base, "test");
    mg::Gpt2LoraSpec spec;
    spec.targets = mg::parse_lora_targets(used.targets);
    spec.layers = {1};
    spec.lora = train::gpt2_experiment_lora(used, run.job);
    const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(*model, spec);
    ASSERT_EQ(layers.size(), 2u);
    const std::vector<double> losses = train::train_gpt2_adapters(
        *model, layers, train::gpt2_experiment_training(used, run.job), Device::cpu(),
        [&](int64_t step) { return train::gpt2_experiment_batch(data.tokens.train, used, run.job, step); });
    // The same arithmetic on the same batches: equal to the last bit.
    ASSERT_EQ(losses.size(), 8u) << run.job.name();
    EXPECT_EQ(run.train_losses, losses) << run.job.name();

    const mg::PeftAdapter saved = mg::read_peft_adapter(r.out_dir + "/" + run.adapter_dir);
    const mg::PeftAdapter ours = mg::gpt2_adapter_to_peft(*model, o.base);
    ASSERT_EQ(saved.tensors.size(), 2u) << run.job.name();  // c_attn's A and B: query and value in PEFT's layout
    ASSERT_EQ(ours.tensors.size(), 2u) << run.job.name();
    for (const auto& [name, x] : ours.tensors) {
      ASSERT_TRUE(saved.tensors.count(name)) << name;
      EXPECT_EQ(max(abs(sub(saved.tensors.at(name), x))).item(), 0.0) << run.job.name() << " " << name;
      // B starts at 0: the steps compared trained the adapter (the curves are not of a frozen model).
      if (name.find("lora_B") != std::string::npos) {
        EXPECT_GT(max(abs(x)).item(), 0.0) << name;
      }
    }
  }
  EXPECT_EQ(checked, 2);  // both seeds
  // The seeds draw different batches and start from different A: two curves, not one twice.
  EXPECT_NE(r.runs[0].train_losses, r.runs[1].train_losses);
}

// W [out, in] of a target as the model stores it, read from its own parameters (not through LoRA).
Tensor stored_w(const mg::Gpt2& model, const std::string& path, int64_t c) {
  for (const auto& [name, p] : model.named_parameters())
    if (name == path + ".kernel")
      return path.find(".attn.") != std::string::npos ? p.reshape({c, c}).mT().contiguous() : p.contiguous();
  ADD_FAILURE() << "no " << path;
  return {};
}

TEST(Gpt2Experiment, SvdVariantErrorIsTheEckartYoungBound) {
  const mg::Config cfg = test::tiny_config();
  Gpt2ExperimentOptions o;
  for (int64_t r : {1, 3, 8}) {
    nn::Generator gen(7);
    mg::Gpt2 model(cfg, gen);
    mg::Gpt2LoraSpec spec;
    spec.targets = {"query", "value", "fc"};
    spec.lora = train::gpt2_experiment_lora(o, {"svd", r, 0});
    std::map<std::string, Tensor> w;
    for (int64_t b = 0; b < cfg.n_layer; ++b)
      for (const char* t : {"attn.query", "attn.value", "mlp.fc"}) {
        const std::string path = mg::layer_path(b, t);
        w[path] = stored_w(model, path, cfg.n_embd).clone();
      }
    const std::vector<mg::Gpt2LoraLayer> layers = mg::inject_gpt2_lora(model, spec);
    ASSERT_EQ(layers.size(), 6u);
    for (const mg::Gpt2LoraLayer& l : layers) {
      EXPECT_EQ(l.lora->base_scale(), 0.0);  // the layer is scale·B·A alone
      const analysis::DeltaReport d =
          analysis::delta_report(w.at(l.path), l.lora->lora_A(), l.lora->lora_B(), l.lora->scale(), 0.0);
      EXPECT_GT(d.eckart_young_error, 0.01) << l.path;  // a truncation that loses something
      EXPECT_NEAR(d.relative_error, d.eckart_young_error, kEckartYoungTol) << l.path << " r=" << r;
      // The layer is the analysis' rank-r truncation of W (computed apart from the LoRA code).
      NoGradGuard ng;
      const Tensor ours = l.lora->delta_weight().to(DType::F64);
      const Tensor best = analysis::truncated_svd(w.at(l.path).to(DType::F64), r).reconstruction();
      EXPECT_LT(max(abs(sub(ours, best))).item(), 1e-5) << l.path << " r=" << r;
    }
  }
}

TEST(Gpt2Experiment, JobsAreMethodTimesRankTimesSeed) {
  Gpt2ExperimentOptions o;
  const std::vector<Gpt2ExperimentJob> jobs = train::gpt2_experiment_jobs(o);
  ASSERT_EQ(jobs.size(), 5u * 2 + 5 + 5 + 5);
  EXPECT_EQ(jobs.front().name(), "lora_r1_s0");
  EXPECT_EQ(jobs[1].name(), "lora_r1_s1");
  EXPECT_EQ(jobs[10].name(), "compress_r1_s0");
  EXPECT_EQ(jobs[15].name(), "pissa_r1_s0");
  EXPECT_EQ(jobs.back().name(), "svd_r64");
}

}  // namespace
}  // namespace lowrank
