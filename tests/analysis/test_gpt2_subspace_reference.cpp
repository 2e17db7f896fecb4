// The GPT-2 subspace analyses against numpy (tests/reference/gpt2_subspace_reference.py): three
// LoRA adapters on query and value of the tiny GPT-2 fixture, saved in PEFT's format as `gpt2 lora`
// saves them (one fused c_attn adapter per block), loaded through models/gpt2/adapter.h exactly as
// the experiment reads them; φ grids (the LoRA paper's Figures 3 and 4) and Table 7 must equal
// numpy's to 1e-6 (the bound).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "analysis/delta_report.h"
#include "analysis/similarity.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/checkpoint.h"

using namespace lowrank;
using namespace lowrank::analysis;
using namespace lowrank::models::gpt2;

namespace {

constexpr double kTol = 1e-6;
const std::string kDir = std::string(LOWRANK_FIXTURES) + "/gpt2_subspace/";

nlohmann::json reference() {
  std::ifstream in(kDir + "reference.json");
  EXPECT_TRUE(in.good()) << "missing fixture; run tests/reference/gpt2_subspace_reference.py";
  return nlohmann::json::parse(in);
}

// 1e-6 absolute for values up to 1 (φ), relative beyond (norms, amplification factors).
void expect_close(double ours, double numpy, const std::string& what) {
  EXPECT_NEAR(ours, numpy, kTol * std::max(1.0, std::abs(numpy))) << what;
}

void expect_grid(const SimilarityGrid& g, const nlohmann::json& ref, const std::string& what) {
  ASSERT_EQ(g.rows, static_cast<int64_t>(ref.size())) << what;
  for (int64_t i = 0; i < g.rows; ++i) {
    ASSERT_EQ(g.cols, static_cast<int64_t>(ref[i].size())) << what;
    for (int64_t j = 0; j < g.cols; ++j)
      expect_close(g.at(i + 1, j + 1), ref[i][j].get<double>(),
                   what + " phi(" + std::to_string(i + 1) + ", " + std::to_string(j + 1) + ")");
  }
}

// One adapter folder loaded into its own copy of the base: layer path -> adapter.
struct Loaded {
  std::unique_ptr<Gpt2> model;
  std::map<std::string, std::shared_ptr<nn::LoRA>> layers;
};

Loaded load(const std::string& name) {
  Loaded l{load_any(std::string(LOWRANK_FIXTURES) + "/gpt2"), {}};
  for (const Gpt2LoraLayer& g : load_peft_adapter(*l.model, kDir + name)) l.layers[g.path] = g.lora;
  return l;
}

Tensor f64(const Tensor& t) {
  return t.detach().to(DType::F64);
}

TEST(Gpt2SubspaceReference, PhiGridsAndTable7MatchNumpy) {
  const nlohmann::json ref = reference();
  std::map<std::string, Loaded> adapters;
  for (auto& [name, spec] : ref["adapters"].items()) {
    adapters[name] = load(name);
    // query and value of both blocks, each its own rank-r adapter (the fused c_attn split back).
    ASSERT_EQ(adapters[name].layers.size(), 4u) << name;
  }
  const auto random = io::load_safetensors(kDir + "random.safetensors").tensors;
  const double base_scale = ref["base_scale"].get<double>();
  int checked = 0;
  for (const nlohmann::json& e : ref["layers"]) {
    const std::string path = "h." + std::to_string(e["layer"].get<int>()) + ".attn." + e["target"].get<std::string>();
    const std::string where = "h." + std::to_string(e["layer"].get<int>()) + "." + e["target"].get<std::string>();
    auto layer = [&](const std::string& name) { return adapters.at(name).layers.at(path); };
    expect_grid(adapter_similarity(f64(layer("r2_seed1")->lora_A()), f64(layer("r8_seed1")->lora_A())), e["phi_rank"],
                path + " rank");
    expect_grid(adapter_similarity(f64(layer("r8_seed1")->lora_A()), f64(layer("r8_seed2")->lora_A())), e["phi_seed"],
                path + " seed");
    expect_grid(
        adapter_similarity(f64(layer("r8_seed1")->lora_B()), f64(layer("r8_seed2")->lora_B()), AdapterSide::LeftOfB),
        e["phi_seed_b"], path + " seed, B");
    for (auto& [name, t7] : e["table7"].items()) {
      const std::shared_ptr<nn::LoRA> l = layer(name);
      const std::string what = path + " " + name;
      ASSERT_EQ(l->config().r, t7["rank"].get<int64_t>()) << what;
      expect_close(l->scale(), t7["scale"].get<double>(), what + " scale");
      expect_close(l->base_scale(), base_scale, what + " base_scale");
      const Tensor w = l->base_weight(), a = l->lora_A(), b = l->lora_B();
      const AmplificationReport rep = amplification_report(w, a, b, l->scale(), random.at(name + "." + where + ".u"),
                                                           random.at(name + "." + where + ".v"));
      expect_close(rep.w_norm, t7["w_norm"].get<double>(), what + " |W|");
      expect_close(rep.delta_norm, t7["delta_norm"].get<double>(), what + " |dW|");
      for (auto [key, d] : {std::pair<const char*, const AmplificationReport::Directions*>{"delta", &rep.delta},
                            {"w", &rep.w},
                            {"random", &rep.random}}) {
        expect_close(d->projected_w_norm, t7[key]["projected_w_norm"].get<double>(), what + " " + key + " |UtWV|");
        expect_close(d->amplification, t7[key]["amplification"].get<double>(), what + " " + key + " amplification");
      }
      const DeltaReport dr = delta_report(w, a, b, l->scale(), l->base_scale());
      expect_close(dr.relative_error, t7["relative_error"].get<double>(), what + " relative error");
      expect_close(dr.eckart_young_error, t7["eckart_young_error"].get<double>(), what + " Eckart-Young");
      expect_close(dr.amplification, t7["delta"]["amplification"].get<double>(), what + " DeltaReport amplification");
      ++checked;
    }
  }
  EXPECT_EQ(checked, 12);  // 2 blocks x 2 targets x 3 adapters
}

}  // namespace
