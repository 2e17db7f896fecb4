// GPT-2 against PyTorch (tests/reference/gpt2_reference.py, llm.c's test_gpt2 as the model):
// the HF-layout fixture loads, and logits, loss, every gradient and 10 AdamW losses match.
#include <gtest/gtest.h>

#include <string>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/checkpoint.h"
#include "optim/adam.h"
#include "support/compare.h"
#include "support/gpt2.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;

namespace {

const std::string kDir = std::string(LOWRANK_FIXTURES) + "/gpt2";

// Logits: the same f32 math in another summation order (OpenBLAS vs torch's GEMMs, our
// attention kernel): measured max |err| 9e-8 on logits up to 0.53.
constexpr test::Tol kLogitsTol{1e-5, 2e-6};
constexpr double kLossRtol = 1e-5;
// Gradients: f32 sums over B·T = 32 rows in another order than torch's. The error is absolute,
// ~1e-7 of the largest terms, and cancellation makes it large relative to small entries, so each
// kind of tensor gets an atol about 10x the largest error measured against torch 1.13 (in
// brackets: max |err| / max |grad|), plus rtol 1e-5 for the large entries.
struct GradTol {
  const char* suffix;
  test::Tol tol;
};
constexpr double kGradRtol = 1e-5;
constexpr GradTol kGradTols[] = {
    {"wte.weight", {kGradRtol, 2e-7}},          // embedding + tied head over 128 rows [2.2e-8 / 0.21]
    {"wpe.weight", {kGradRtol, 1e-7}},          // [1.3e-8 / 0.08]
    {"c_attn.weight", {kGradRtol, 5e-8}},       // through the attention backward [4.7e-9 / 0.017]
    {"c_attn.bias", {kGradRtol, 3e-8}},         // [2.8e-9 / 0.011]
    {"attn.c_proj.weight", {kGradRtol, 1e-7}},  // one GEMM [7.5e-9 / 0.035]
    {"attn.c_proj.bias", {kGradRtol, 5e-7}},    // sum of 32 residual-stream rows [4.5e-8 / 0.22]
    {"mlp.c_fc.weight", {kGradRtol, 5e-8}},     // through GELU [3.3e-9 / 0.018]
    {"mlp.c_fc.bias", {kGradRtol, 3e-8}},       // [1.9e-9 / 0.0064]
    {"mlp.c_proj.weight", {kGradRtol, 1e-7}},   // [8.4e-9 / 0.025]
    {"mlp.c_proj.bias", {kGradRtol, 5e-7}},     // [3.4e-8 / 0.20]
    {"weight", {kGradRtol, 1e-8}},              // LayerNorm gamma [9.3e-10 / 0.0074]
    {"bias", {kGradRtol, 1e-8}},                // LayerNorm beta [1.1e-9 / 0.0087]
};
// 10 AdamW steps: Adam divides by sqrt(v) + eps, which amplifies the tiny gradient differences
// of near-zero gradients; llm.c accepts 1e-2 on its loss. The issue asks for 1e-4.
constexpr double kAdamLossAtol = 1e-4;

test::Tol grad_tol(const std::string& name) {
  for (const GradTol& g : kGradTols)
    if (name.size() >= std::string(g.suffix).size() &&
        name.compare(name.size() - std::string(g.suffix).size(), std::string::npos, g.suffix) == 0)
      return g.tol;
  ADD_FAILURE() << "no tolerance for " << name;
  return {0, 0};
}

struct Fixture {
  std::unique_ptr<Gpt2> model;
  io::SafetensorsFile ref;
};

Fixture load_fixture() {
  Fixture f;
  f.model = load_any(kDir);  // HF layout, "transformer." prefix, attn.bias buffers
  f.ref = io::load_safetensors(kDir + "/reference.safetensors");
  return f;
}

double meta(const io::SafetensorsFile& f, const std::string& key) {
  return std::stod(f.metadata.at(key));
}

}  // namespace

TEST(Gpt2Reference, LogitsLossAndGradients) {
  Fixture f = load_fixture();
  Gpt2& m = *f.model;
  EXPECT_EQ(m.config().n_layer, 2);
  EXPECT_EQ(m.config().vocab_size, 128);
  const Tensor ids = f.ref.tensors.at("ids"), targets = f.ref.tensors.at("targets");
  Tensor logits = m.forward(ids);
  EXPECT_TRUE(test::all_close(logits, f.ref.tensors.at("logits"), kLogitsTol, "logits"));
  Tensor loss = m.loss(ids, targets);
  const double want = f.ref.tensors.at("loss").item();
  EXPECT_NEAR(loss.item(), want, kLossRtol * std::abs(want));
  loss.backward();

  std::map<std::string, Tensor> grads;
  for (const auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    grads[name] = p.grad();
  }
  size_t compared = 0;
  for (const auto& [name, g] : state_to_hf(grads, m.config())) {
    const std::string key = "grad.transformer." + name;
    ASSERT_TRUE(f.ref.tensors.count(key)) << key;
    EXPECT_TRUE(test::all_close(g, f.ref.tensors.at(key), grad_tol(name), name));
    ++compared;
  }
  EXPECT_EQ(compared, 4u + 12u * 2u);
}

TEST(Gpt2Reference, TenAdamWSteps) {
  Fixture f = load_fixture();
  Gpt2& m = *f.model;
  optim::AdamOptions o{.lr = meta(f.ref, "adamw_lr"),
                       .beta1 = meta(f.ref, "adamw_beta1"),
                       .beta2 = meta(f.ref, "adamw_beta2"),
                       .eps = meta(f.ref, "adamw_eps"),
                       .weight_decay = meta(f.ref, "adamw_weight_decay")};
  optim::AdamW opt(m.named_parameters(), o);  // one group: decay on every parameter, as the script
  const Tensor ids = f.ref.tensors.at("ids"), targets = f.ref.tensors.at("targets");
  const std::vector<float> want = f.ref.tensors.at("adamw_losses").to_vector<float>();
  ASSERT_EQ(want.size(), 10u);
  for (size_t i = 0; i < want.size(); ++i) {
    opt.zero_grad();
    Tensor loss = m.loss(ids, targets);
    EXPECT_NEAR(loss.item(), want[i], kAdamLossAtol) << "step " << i;
    loss.backward();
    opt.step();
  }
}
