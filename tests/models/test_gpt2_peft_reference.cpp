// GPT-2 LoRA adapters against PEFT's formulas: tests/reference/gpt2_peft_reference.py applied each
// adapter in tests/fixtures/gpt2_peft/<case>/ to the HF-layout base in tests/fixtures/gpt2/ as PEFT's
// fan_in_fan_out Conv1D LoRA does; our import must give its logits, and our export of the same
// per-layer factors (ours.safetensors) must give its PEFT tensors and config.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2_test_util.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
namespace gt = lowrank::gpt2_test;
using nlohmann::json;

namespace {

// Our f32 forward against PyTorch's f64 one on the same f32 weights: the f32 rounding of a
// 2-block model with logits of order 1 (the base reference test's own tolerance, doubled for the
// adapters' extra products).
constexpr gt::Tol kLogitsTol{2e-5, 4e-6};

struct Case {
  const char* name;
  std::vector<std::string> targets;
  std::vector<int64_t> layers;
  int64_t r;
  double alpha;
  bool rslora;
  size_t imported;  // adapters the PEFT file becomes: 3 per c_attn (q, k, v share A) + one per other module
};
// As CASES in the script.
const Case kCases[] = {{"mixed", {"query", "value", "out", "fc", "proj"}, {0, 1}, 2, 6.0, false, 12},
                       {"qkv_rslora", {"query", "key", "value"}, {1}, 3, 4.0, true, 3}};

std::string case_dir(const Case& c) {
  return std::string(LOWRANK_FIXTURES) + "/gpt2_peft/" + c.name;
}

std::unique_ptr<Gpt2> base() {
  return load_any(std::string(LOWRANK_FIXTURES) + "/gpt2");
}

Tensor logits_of(Gpt2& m, const Tensor& ids) {
  NoGradGuard ng;
  m.eval();
  return m.forward(ids);
}

}  // namespace

TEST(Gpt2PeftReference, ImportGivesPeftsLogits) {
  for (const Case& c : kCases) {
    const auto ref = io::load_safetensors(case_dir(c) + "/reference.safetensors");
    auto m = base();
    // The adapters move the logits far beyond the tolerance: a test that ignored them would fail.
    const Tensor base_logits = logits_of(*m, ref.tensors.at("ids"));
    EXPECT_GT(max(abs(sub(base_logits, ref.tensors.at("logits")))).item(), 0.05) << c.name;
    const auto layers = load_peft_adapter(*m, case_dir(c));
    // The fixture has no metadata of ours: c_attn comes back as q, k, v sharing A.
    EXPECT_EQ(layers.size(), c.imported) << c.name;
    EXPECT_TRUE(gt::close(logits_of(*m, ref.tensors.at("ids")), ref.tensors.at("logits"), kLogitsTol, c.name));
  }
}

TEST(Gpt2PeftReference, ExportGivesPeftsTensorsAndConfig) {
  for (const Case& c : kCases) {
    const auto ref = io::load_safetensors(case_dir(c) + "/reference.safetensors");
    const auto ours = io::load_safetensors(case_dir(c) + "/ours.safetensors");
    const auto peft = read_peft_adapter(case_dir(c));
    auto m = base();
    Gpt2LoraSpec s;
    s.targets = c.targets;
    s.layers = c.layers;
    s.lora.r = c.r;
    s.lora.alpha = c.alpha;
    s.lora.use_rslora = c.rslora;
    for (const Gpt2LoraLayer& l : inject_gpt2_lora(*m, s)) l.lora->load_adapter_state(ours.tensors, l.path);
    EXPECT_TRUE(gt::close(logits_of(*m, ref.tensors.at("ids")), ref.tensors.at("logits"), kLogitsTol, c.name));

    const PeftAdapter mine = gpt2_adapter_to_peft(*m, "tests/fixtures/gpt2");
    ASSERT_EQ(mine.tensors.size(), peft.tensors.size()) << c.name;
    for (const auto& [name, t] : peft.tensors) {
      ASSERT_TRUE(mine.tensors.count(name)) << name;
      EXPECT_TRUE(gt::bitwise_equal(mine.tensors.at(name), t)) << name;
    }
    const json got = json::parse(mine.config_json), want = json::parse(peft.config_json);
    for (const char* key : {"peft_type", "task_type", "r", "target_modules", "fan_in_fan_out", "use_rslora",
                            "layers_to_transform", "rank_pattern", "bias", "base_model_name_or_path"})
      EXPECT_EQ(got[key], want[key]) << c.name << " " << key;
    EXPECT_NEAR(got["lora_alpha"].get<double>(), want["lora_alpha"].get<double>(), 1e-12) << c.name;
    for (auto& [k, v] : want["alpha_pattern"].items())
      EXPECT_NEAR(got["alpha_pattern"][k].get<double>(), v.get<double>(), 1e-12) << c.name << " " << k;
  }
}
