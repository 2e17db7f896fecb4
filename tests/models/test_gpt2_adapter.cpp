// GPT-2 LoRA adapters in PEFT's format: injection by targets and blocks, export -> import round
// trips, the exported tensors against PEFT's fan_in_fan_out formula, c_attn adapters PEFT trained
// (shared A), refusals of bad files, and merge_and_unload.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "core/test_util.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2_test_util.h"
#include "nn/lora.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
using lowrank::testing::throws_with;
namespace gt = lowrank::gpt2_test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// f32 logits of the same model through different but equivalent paths (adapter vs merged kernel,
// fused vs unfused): only summation order differs.
constexpr gt::Tol kSamePath{1e-5, 1e-5};

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("lowrank_gpt2_adapter_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

std::unique_ptr<Gpt2> base_model(uint64_t seed = 7) {
  nn::Generator g(seed);
  return std::make_unique<Gpt2>(gt::tiny_config(), g);
}

Tensor logits_of(Gpt2& m, const Tensor& ids) {
  NoGradGuard ng;
  m.eval();
  return m.forward(ids);
}

// B starts at zero; give every adapter random A and B so that ΔW is not zero.
void randomize(const std::vector<Gpt2LoraLayer>& layers, uint64_t seed) {
  NoGradGuard ng;
  for (const Gpt2LoraLayer& l : layers) {
    Tensor a = l.lora->lora_A(), b = l.lora->lora_B();
    a.copy_(mul(gt::random_ids(a.size(0), a.size(1), 1000, seed++).to(DType::F32), 1e-3));
    b.copy_(sub(mul(gt::random_ids(b.size(0), b.size(1), 1000, seed++).to(DType::F32), 2e-4), 0.1));
  }
}

Gpt2LoraSpec spec(std::vector<std::string> targets, int64_t r, double alpha, std::vector<int64_t> layers = {}) {
  Gpt2LoraSpec s;
  s.targets = std::move(targets);
  s.layers = std::move(layers);
  s.lora.r = r;
  s.lora.alpha = alpha;
  return s;
}

json config_of(const PeftAdapter& a) {
  return json::parse(a.config_json);
}

}  // namespace

TEST(Gpt2Adapter, ParsesTargetsAndLayers) {
  EXPECT_EQ(parse_lora_targets("value,query"), (std::vector<std::string>{"query", "value"}));
  EXPECT_EQ(parse_lora_targets("proj,fc,out,key"), (std::vector<std::string>{"key", "out", "fc", "proj"}));
  EXPECT_TRUE(throws_with([] { parse_lora_targets("query,q_proj"); }, {"unknown target 'q_proj'", "query, key"}));
  EXPECT_TRUE(throws_with([] { parse_lora_targets("query,query"); }, {"twice"}));
  EXPECT_TRUE(throws_with([] { parse_lora_targets(""); }, {"unknown target ''"}));
  EXPECT_EQ(parse_lora_layers("", 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(parse_lora_layers("all", 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(parse_lora_layers("4,0-2,1", 5), (std::vector<int64_t>{0, 1, 2, 4}));
  EXPECT_TRUE(throws_with([] { parse_lora_layers("0,12", 12); }, {"block 12", "12 blocks"}));
  EXPECT_TRUE(throws_with([] { parse_lora_layers("x", 12); }, {"not a block number"}));
  EXPECT_TRUE(throws_with([] { parse_lora_layers("3-1", 12); }, {"backwards"}));
}

TEST(Gpt2Adapter, InjectsTargetsAndLayersAndFreezesTheBase) {
  auto m = base_model();
  auto layers = inject_gpt2_lora(*m, spec({"query", "value", "fc"}, 2, 4, {1}));
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[0].path, "h.1.attn.query");
  EXPECT_EQ(layers[1].path, "h.1.attn.value");
  EXPECT_EQ(layers[2].path, "h.1.mlp.fc");
  EXPECT_EQ(gpt2_lora_layers(*m).size(), 3u);
  const int64_t C = 16;
  EXPECT_EQ(m->parameter_count().trainable, 2 * (2 * C + C * 2) + (2 * C + 4 * C * 2));
  // Each layer draws its own A.
  EXPECT_FALSE(gt::bitwise_equal(layers[0].lora->lora_A(), layers[1].lora->lora_A()));
  EXPECT_TRUE(throws_with([&] { inject_gpt2_lora(*m, spec({"key"}, 2, 4)); }, {"already has adapters"}));
  auto big = base_model();
  EXPECT_TRUE(throws_with([&] { inject_gpt2_lora(*big, spec({"query"}, 17, 4)); }, {"rank 17", "min(in, out) = 16"}));
}

// The exported c_attn adapter, put through PEFT's formula for a Conv1D (W[in, out] += s'·(B'A')ᵀ)
// on the HF layout of the base, gives our merged q/k/v kernels; so do c_proj, c_fc and c_proj.
TEST(Gpt2Adapter, ExportMatchesPeftFormulaOnTheHfLayout) {
  for (bool rslora : {false, true}) {
    auto m = base_model();
    Gpt2LoraSpec s = spec({"query", "value", "out", "proj"}, 2, 3);
    s.lora.use_rslora = rslora;
    auto layers = inject_gpt2_lora(*m, s);
    randomize(layers, 11);
    const PeftAdapter a = gpt2_adapter_to_peft(*m, "base");
    const json cfg = config_of(a);
    EXPECT_EQ(cfg["peft_type"], "LORA");
    EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
    EXPECT_EQ(cfg["fan_in_fan_out"], true);
    EXPECT_EQ(cfg["use_rslora"], rslora);
    EXPECT_EQ(cfg["r"], 2);
    EXPECT_EQ(cfg["rank_pattern"]["c_attn"], 4);
    EXPECT_TRUE(cfg["layers_to_transform"].is_null());
    EXPECT_EQ(cfg["target_modules"], (json{"c_attn", "attn.c_proj", "mlp.c_proj"}));
    EXPECT_EQ(a.tensors.size(), 2u * 2u * 3u);

    auto hf_base = state_to_hf(base_model()->state_dict(), m->config());
    std::map<std::string, Tensor> hf_merged = hf_base;
    NoGradGuard ng;
    for (const std::string module : {"attn.c_attn", "attn.c_proj", "mlp.c_proj"}) {
      const std::string pattern_key = module == "attn.c_attn" ? "c_attn" : "";
      const int64_t r = pattern_key.empty() ? cfg["r"].get<int64_t>() : cfg["rank_pattern"][pattern_key].get<int64_t>();
      const double alpha =
          pattern_key.empty() ? cfg["lora_alpha"].get<double>() : cfg["alpha_pattern"][pattern_key].get<double>();
      const double scale = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
      for (int64_t b = 0; b < 2; ++b) {
        const std::string p = "base_model.model.transformer.h." + std::to_string(b) + "." + module;
        const Tensor A = a.tensors.at(p + ".lora_A.weight"), B = a.tensors.at(p + ".lora_B.weight");
        EXPECT_EQ(A.size(0), r);
        const std::string w = "h." + std::to_string(b) + "." + module + ".weight";
        hf_merged[w] = add(hf_base.at(w), mul(matmul(B, A).mT(), scale));
      }
    }
    nn::merge_and_unload(*m);
    auto ours = state_to_hf(m->state_dict(), m->config());
    for (auto& [name, t] : hf_merged) EXPECT_TRUE(gt::close(ours.at(name), t, {1e-6, 1e-7}, name)) << rslora;
    // The key block of c_attn's B is zero: no adapter there.
    const Tensor B0 = a.tensors.at("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight");
    EXPECT_EQ(max(abs(B0.slice(0, 16, 32))).item(), 0.0);
  }
}

TEST(Gpt2Adapter, RoundTripGivesTheSameLogitsAndLayers) {
  TempDir tmp;
  const Tensor ids = gt::random_ids(2, 9, 50, 3);
  struct Case {
    std::vector<std::string> targets;
    std::vector<int64_t> layers;
    bool rslora;
  };
  for (const Case& c :
       {Case{{"query", "value"}, {}, false}, Case{{"query", "key", "value", "out", "fc", "proj"}, {1}, true},
        Case{{"key", "fc"}, {0}, false}}) {
    auto m = base_model();
    Gpt2LoraSpec s = spec(c.targets, 3, 5, c.layers);
    s.lora.use_rslora = c.rslora;
    randomize(inject_gpt2_lora(*m, s), 5);
    const Tensor want = logits_of(*m, ids);
    const std::string dir = tmp / ("adapter_" + c.targets.front() + std::to_string(c.targets.size()));
    save_peft_adapter(*m, dir, "runs/gpt2");
    EXPECT_TRUE(fs::exists(dir + "/adapter_model.safetensors"));
    const json cfg = json::parse(std::ifstream(dir + "/adapter_config.json"));
    EXPECT_EQ(cfg["base_model_name_or_path"], "runs/gpt2");
    if (!c.layers.empty()) {
      EXPECT_EQ(cfg["layers_to_transform"], json(c.layers));
    }

    auto fresh = base_model();
    auto loaded = load_peft_adapter(*fresh, dir);
    const auto orig = gpt2_lora_layers(*m);
    ASSERT_EQ(loaded.size(), orig.size());
    for (size_t i = 0; i < loaded.size(); ++i) {
      EXPECT_EQ(loaded[i].path, orig[i].path);
      EXPECT_EQ(loaded[i].lora->config().r, 3);
      EXPECT_EQ(loaded[i].lora->config().alpha, 5.0);
      EXPECT_EQ(loaded[i].lora->config().use_rslora, c.rslora);
      EXPECT_TRUE(gt::bitwise_equal(loaded[i].lora->lora_B(), orig[i].lora->lora_B()));
    }
    EXPECT_TRUE(gt::close(logits_of(*fresh, ids), want, {0, 0}, "round trip"));
  }
}

// A c_attn adapter as PEFT trains it (one A for q, k and v, no metadata of ours): each of q, k, v
// takes its row block of B, and the logits equal the HF base with W += s·(BA)ᵀ.
TEST(Gpt2Adapter, LoadsAPeftTrainedCAttnAdapter) {
  auto m = base_model();
  const int64_t C = 16, r = 5;
  PeftAdapter a;
  a.config_json =
      R"({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 5, "lora_alpha": 10, "target_modules": ["c_attn"],
          "fan_in_fan_out": true, "bias": "none", "lora_dropout": 0.05, "layers_to_transform": [1]})";
  const Tensor A = mul(gt::random_ids(r, C, 1000, 1).to(DType::F32), 1e-3);
  const Tensor B = sub(mul(gt::random_ids(3 * C, r, 1000, 2).to(DType::F32), 2e-4), 0.1);
  a.tensors["base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"] = A;
  a.tensors["base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"] = B;
  auto layers = apply_peft_adapter(*m, a);
  ASSERT_EQ(layers.size(), 3u);
  EXPECT_EQ(layers[2].path, "h.1.attn.value");
  EXPECT_EQ(layers[0].lora->config().r, r);
  EXPECT_DOUBLE_EQ(layers[0].lora->scale(), 2.0);
  EXPECT_DOUBLE_EQ(layers[0].lora->config().dropout, 0.05);

  auto hf = state_to_hf(base_model()->state_dict(), m->config());
  {
    NoGradGuard ng;
    hf["h.1.attn.c_attn.weight"] = add(hf["h.1.attn.c_attn.weight"], mul(matmul(B, A).mT(), 2.0));
  }
  auto want = base_model();
  want->load_state_dict(hf_to_state(hf, m->config()));
  const Tensor ids = gt::random_ids(2, 7, 50, 4);
  EXPECT_TRUE(gt::close(logits_of(*m, ids), logits_of(*want, ids), kSamePath, "PEFT c_attn"));
}

TEST(Gpt2Adapter, RefusesBadAdapters) {
  auto m = base_model();
  randomize(inject_gpt2_lora(*m, spec({"query", "fc"}, 2, 4)), 3);
  const PeftAdapter good = gpt2_adapter_to_peft(*m, "x");
  auto attempt = [&](const PeftAdapter& a) {
    auto fresh = base_model();
    apply_peft_adapter(*fresh, a, "the adapter");
  };
  {
    PeftAdapter a = good;
    a.tensors.erase("base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight");
    a.tensors["base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight"] = Tensor::zeros({3, 16});
    a.tensors["base_model.model.transformer.h.0.attn.c_attn.lora_C.weight"] = Tensor::zeros({1});
    EXPECT_TRUE(
        throws_with([&] { attempt(a); },
                    {"missing 'base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight' [64, 2]",
                     "h.0.mlp.c_fc.lora_A.weight' is [3, 16], this model needs [2, 16]", "unexpected", "lora_C"}));
  }
  {
    PeftAdapter a = good;
    for (int i = 0; i < 10; ++i) a.tensors["extra." + std::to_string(i)] = Tensor::zeros({1});
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"and 4 more (10 in all)"}));
  }
  {
    PeftAdapter a = good;
    json c = config_of(a);
    c["target_modules"] = {"c_attn", "q_proj"};
    a.config_json = c.dump();
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"target module 'q_proj' matches no GPT-2 layer"}));
    c = config_of(good);
    c["peft_type"] = "IA3";
    a.config_json = c.dump();
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"peft_type is 'IA3'"}));
    a.config_json = "{\"r\": ";
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"not JSON"}));
    c = config_of(good);
    c["layers_to_transform"] = {0, 5};
    a.config_json = c.dump();
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"block 5", "another model size"}));
  }
  {
    // Another model size: our metadata says so first; without it, the shapes do.
    Config wide = gt::tiny_config();
    wide.n_embd = 32;
    nn::Generator g(1);
    Gpt2 big(wide, g);
    inject_gpt2_lora(big, spec({"query", "fc"}, 2, 4));
    PeftAdapter a = gpt2_adapter_to_peft(big, "x");
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"made for a GPT-2 with 2 blocks of width 32", "width 16"}));
    a.metadata.clear();
    EXPECT_TRUE(throws_with([&] { attempt(a); }, {"another model size", "[2, 32]"}));
  }
  {
    TempDir tmp;
    auto fresh = base_model();
    EXPECT_TRUE(throws_with([&] { load_peft_adapter(*fresh, tmp.str()); }, {"holds no adapter_model.safetensors"}));
  }
}

TEST(Gpt2Adapter, MergeAndUnloadGivesAPlainModelWithTheSameLogits) {
  TempDir tmp;
  auto m = base_model();
  Gpt2LoraSpec s = spec({"query", "key", "value", "out", "fc", "proj"}, 2, 4);
  s.lora.base_scale = nn::BaseScaleSchedule::constant(0.9);
  randomize(inject_gpt2_lora(*m, s), 9);
  const Tensor ids = gt::random_ids(2, 8, 50, 6);
  const Tensor want = logits_of(*m, ids);
  // With adapters in, an HF save is refused and leaves no folder behind.
  EXPECT_TRUE(throws_with([&] { save_hf_checkpoint(*m, tmp / "hf"); }, {"plain model", "merge_and_unload"}));
  EXPECT_FALSE(fs::exists(tmp / "hf"));
  EXPECT_EQ(nn::merge_and_unload(*m), 12);
  EXPECT_TRUE(gpt2_lora_layers(*m).empty());
  EXPECT_TRUE(gt::close(logits_of(*m, ids), want, kSamePath, "merged"));
  save_hf_checkpoint(*m, tmp / "hf");
  save_checkpoint(*m, tmp / "ours");
  for (const std::string& d : {tmp / "hf", tmp / "ours"}) {
    auto back = load_any(d);
    EXPECT_TRUE(gt::close(logits_of(*back, ids), want, kSamePath, d));
  }
  for (auto& e : fs::directory_iterator(tmp.str()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// A PiSSA adapter lives on a residual base; exported with its initial factors (rank 2r, as PEFT
// converts PiSSA) it gives the same model on the original base.
TEST(Gpt2Adapter, PissaExportsAsALoraOfTheOriginalWeights) {
  auto m = base_model();
  Gpt2LoraSpec s = spec({"query", "fc"}, 2, 4);
  s.lora.init = nn::LoraInit::Pissa;
  const auto layers = inject_gpt2_lora(*m, s);
  LoraInitialFactors initial;
  {
    NoGradGuard ng;
    for (const Gpt2LoraLayer& l : layers) initial[l.path] = {l.lora->lora_A().clone(), l.lora->lora_B().clone()};
    for (const Gpt2LoraLayer& l : layers) {  // "training" moves A and B away from where they started
      Tensor a = l.lora->lora_A(), b = l.lora->lora_B();
      a.copy_(add(a, mul(gt::random_ids(a.size(0), a.size(1), 100, 1).to(DType::F32), 1e-3)));
      b.copy_(add(b, mul(gt::random_ids(b.size(0), b.size(1), 100, 2).to(DType::F32), 1e-3)));
    }
  }
  EXPECT_TRUE(throws_with([&] { gpt2_adapter_to_peft(*m, "x"); }, {"PiSSA", "initial factors"}));
  const PeftAdapter a = gpt2_adapter_to_peft(*m, "x", &initial);
  EXPECT_EQ(config_of(a)["r"], 4);  // 2r, for c_attn (one q/k/v target) and c_fc alike
  EXPECT_TRUE(config_of(a)["rank_pattern"].empty());
  const Tensor ids = gt::random_ids(2, 8, 50, 8);
  auto fresh = base_model();
  apply_peft_adapter(*fresh, a);
  EXPECT_TRUE(gt::close(logits_of(*fresh, ids), logits_of(*m, ids), kSamePath, "pissa"));
}
