// GPT-2 against PyTorch (tests/reference/gpt2_reference.py, llm.c's test_gpt2 as the model):
// the HF-layout fixture loads, and logits, loss, every gradient and 10 AdamW losses match.
#include <gtest/gtest.h>

#include <string>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2_test_util.h"
#include "optim/adam.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
namespace gt = lowrank::gpt2_test;

namespace {

const std::string kDir = std::string(LOWRANK_FIXTURES) + "/gpt2";

// Logits: the same f32 math in another summation order (OpenBLAS vs MKL-less torch GEMMs, our
// attention's online softmax): a few ulps, relative to logits of size ~1.
constexpr gt::Tol kLogitsTol{1e-5, 2e-6};
constexpr double kLossRtol = 1e-5;
// Gradients are sums over B·T = 32 rows of products of f32 values each carrying ~1e-7 relative
// error; the sums cancel (gradients are ~1e-3 while their terms are ~1e-1), so the error is
// absolute, near 1e-7 · |terms|. Tolerances per tensor kind, from the largest term scale:
//   embeddings: wte also collects the tied head's dlogits·h over every vocabulary row;
//   attention kernels: q/k/v gradients go through the softmax backward (another subtraction);
//   LayerNorm: dgamma/dbeta sum 32 rows of the layer-norm backward;
//   MLP and projections: one GEMM each.
struct GradTol {
  const char* suffix;
  gt::Tol tol;
};
constexpr GradTol kGradTols[] = {
    {"wte.weight", {1e-4, 2e-6}},
    {"wpe.weight", {1e-4, 1e-6}},
    {"c_attn.weight", {1e-4, 2e-6}},
    {"c_attn.bias", {1e-4, 2e-6}},
    {"attn.c_proj.weight", {1e-4, 1e-6}},
    {"attn.c_proj.bias", {1e-4, 1e-6}},
    {"mlp.c_fc.weight", {1e-4, 1e-6}},
    {"mlp.c_fc.bias", {1e-4, 1e-6}},
    {"mlp.c_proj.weight", {1e-4, 1e-6}},
    {"mlp.c_proj.bias", {1e-4, 1e-6}},
    {"weight", {1e-4, 2e-6}},
    {"bias", {1e-4, 2e-6}},
};
// 10 AdamW steps: Adam divides by sqrt(v) + eps, which amplifies the tiny gradient differences
// of near-zero gradients; llm.c accepts 1e-2 on its loss. The issue asks for 1e-4.
constexpr double kAdamLossAtol = 1e-4;

gt::Tol grad_tol(const std::string& name) {
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
  EXPECT_TRUE(gt::close(logits, f.ref.tensors.at("logits"), kLogitsTol, "logits"));
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
    EXPECT_TRUE(gt::close(g, f.ref.tensors.at(key), grad_tol(name), name));
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
