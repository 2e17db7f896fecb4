// The GPT-2 model: config presets and JSON, module paths and shapes, bad input, causality, the
// KV cache against the full forward, LoRA on q/v/fc training, dropout determinism.
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "models/gpt2/model.h"
#include "nn/lora.h"
#include "optim/adam.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/gpt2.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
using lowrank::test::throws_with;

namespace {

// The cached path runs the same ops on fewer rows; only GEMM blocking and the attention's
// summation order over a different number of keys differ: a few f32 ulps of logits near 1.
constexpr test::Tol kCacheTol{1e-5, 1e-5};

}  // namespace

TEST(Gpt2Config, PresetsMatchOpenAiSizes) {
  EXPECT_EQ(Config::preset("gpt2").num_parameters(), 124439808);  // HF's GPT2LMHeadModel, tied head once
  EXPECT_EQ(Config::preset("gpt2-medium").num_parameters(), 354823168);
  Config s = Config::preset("small");
  EXPECT_EQ(s.n_layer, 4);
  EXPECT_EQ(s.n_head, 4);
  EXPECT_EQ(s.n_embd, 256);
  EXPECT_EQ(s.n_ctx, 256);
  EXPECT_EQ(Config::preset("gpt2-xl").n_head, 25);
  EXPECT_TRUE(throws_with([] { Config::preset("gpt3"); }, {"gpt3", "gpt2-medium", "tiny"}));
}

TEST(Gpt2Config, JsonRoundTripAndHfKeys) {
  Config c = test::tiny_config(0.25);
  c.layer_norm_eps = 1e-6;
  EXPECT_EQ(Config::from_json(c.to_json()), c);
  // HF's names: n_positions wins over n_ctx; the three pdrops must agree.
  Config h = Config::from_json(R"({"model_type": "gpt2", "n_layer": 3, "n_head": 2, "n_embd": 8, "n_ctx": 7,
    "n_positions": 9, "vocab_size": 11, "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"})");
  EXPECT_EQ(h.n_layer, 3);
  EXPECT_EQ(h.n_ctx, 9);
  EXPECT_EQ(h.vocab_size, 11);
  EXPECT_DOUBLE_EQ(h.dropout, 0.1);
  EXPECT_TRUE(throws_with([] { Config::from_json("{\"n_layer\": 2,"); }, {"not valid JSON"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(R"({"n_layer": "two"})"); }, {"n_layer", "integer"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(R"({"n_embd": 10, "n_head": 3})"); }, {"n_embd", "n_head"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(R"({"model_type": "bert"})"); }, {"bert"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(R"({"activation_function": "relu"})"); }, {"relu"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(R"({"resid_pdrop": 0.1, "attn_pdrop": 0.0})"); }, {"attn_pdrop"}));
  EXPECT_TRUE(throws_with([] { Config::from_json_file("/nonexistent/config.json"); }, {"/nonexistent/config.json"}));
}

TEST(Gpt2Model, PathsShapesAndCount) {
  Config c = test::tiny_config();
  nn::Generator gen(1);
  Gpt2 m(c, gen);
  const int64_t C = 16, H = 2, D = 8, V = 50;
  std::map<std::string, Shape> want{
      {"wte.embeddings", {V, C}},           {"wpe.embeddings", {16, C}},         {"h.1.ln_1.gamma", {C}},
      {"h.1.attn.query.kernel", {C, H, D}}, {"h.1.attn.query.bias", {H, D}},     {"h.0.attn.key.kernel", {C, H, D}},
      {"h.0.attn.value.bias", {H, D}},      {"h.0.attn.out.kernel", {H, D, C}},  {"h.0.attn.out.bias", {C}},
      {"h.0.mlp.fc.kernel", {4 * C, C}},    {"h.0.mlp.proj.kernel", {C, 4 * C}}, {"ln_f.beta", {C}}};
  auto sd = m.state_dict();
  for (const auto& [name, shape] : want) {
    ASSERT_TRUE(sd.count(name)) << name;
    EXPECT_EQ(sd[name].shape(), shape) << name;
  }
  EXPECT_EQ(sd.size(), 4u + 2 * 16u);
  EXPECT_EQ(m.parameter_count().total, c.num_parameters());
  EXPECT_EQ(layer_path(1, "attn.query"), "h.1.attn.query");
  EXPECT_EQ(m.submodule("h.1.attn.query").type_name(), "EinsumDense");
  EXPECT_EQ(m.submodule("h.0.mlp.fc").type_name(), "Dense");
  // GPT-2's init: std 0.02, the residual projections 0.02 / sqrt(2 n_layer) = 0.01 with 2 layers.
  Config wide = test::tiny_config();  // wide enough for the sample deviations to be within 2%
  wide.n_embd = 128, wide.n_head = 4;
  Gpt2 big(wide, gen);
  auto sd2 = big.state_dict();
  auto stddev = [](const Tensor& t) {
    double s = 0, s2 = 0;
    for (double v : t.to_vector<double>()) s += v, s2 += v * v;
    const double n = static_cast<double>(t.numel());
    return std::sqrt(s2 / n - (s / n) * (s / n));
  };
  EXPECT_NEAR(stddev(sd2["h.0.attn.query.kernel"]), 0.02, 0.001);
  EXPECT_NEAR(stddev(sd2["h.0.mlp.proj.kernel"]), 0.01, 0.0003);
  EXPECT_NEAR(stddev(sd2["h.1.attn.out.kernel"]), 0.01, 0.0003);
  EXPECT_NEAR(stddev(sd2["wte.embeddings"]), 0.02, 0.001);
  EXPECT_EQ(sd2["h.1.attn.out.bias"].to_vector<float>(), std::vector<float>(128, 0.0f));
}

TEST(Gpt2Model, LogitsShapeAndBadInput) {
  Gpt2 m(test::tiny_config());
  Tensor logits = m.forward(test::random_ids(3, 5, 50, 1));
  EXPECT_EQ(logits.shape(), (Shape{3, 5, 50}));
  EXPECT_TRUE(throws_with([&] { m.forward(test::random_ids(1, 17, 50, 1)); }, {"17", "n_ctx = 16"}));
  EXPECT_TRUE(throws_with(
      [&] {
        m.forward(Tensor::from_vector(std::vector<int64_t>{1, 50}, {1, 2}));
      },
      {"token id 50", "[0, 50)"}));
  EXPECT_TRUE(throws_with(
      [&] {
        m.forward(Tensor::from_vector(std::vector<int64_t>{-3, 1}, {1, 2}));
      },
      {"token id -3"}));
  EXPECT_TRUE(throws_with([&] { m.forward(Tensor::zeros({1, 2})); }, {"int64"}));
  EXPECT_TRUE(throws_with([&] { m.forward(Tensor::from_vector(std::vector<int64_t>{1, 2}, {2})); }, {"[batch, time]"}));
  Tensor ids = test::random_ids(2, 4, 50, 2);
  EXPECT_TRUE(throws_with([&] { m.loss(ids, test::random_ids(2, 3, 50, 2)); }, {"targets"}));
}

TEST(Gpt2Model, CausalAndLossMatchesCrossEntropy) {
  Gpt2 m(test::tiny_config());
  NoGradGuard ng;
  Tensor a = test::random_ids(1, 8, 50, 3);
  std::vector<int64_t> v = a.to_vector<int64_t>();
  v[6] = (v[6] + 1) % 50;  // change position 6: logits 0..5 must not move, 6 must
  Tensor la = m.forward(a), lb = m.forward(Tensor::from_vector(v, {1, 8}));
  EXPECT_TRUE(test::bitwise_equal(la.slice(1, 0, 6).contiguous(), lb.slice(1, 0, 6).contiguous()));
  EXPECT_FALSE(test::all_close(la.slice(1, 6, 7), lb.slice(1, 6, 7), {0, 1e-6}));
  // The loss is the mean over non-ignored targets of -log softmax.
  std::vector<int64_t> t = test::random_ids(1, 8, 50, 4).to_vector<int64_t>();
  t[2] = -100;
  Tensor loss = m.loss(a, Tensor::from_vector(t, {1, 8}));
  std::vector<double> lp = log_softmax(la, -1).to_vector<double>();
  double want = 0;
  for (size_t i = 0; i < 8; ++i)
    if (t[i] != -100) want -= lp[i * 50 + static_cast<size_t>(t[i])];
  EXPECT_NEAR(loss.item(), want / 7.0, 1e-5);
}

TEST(Gpt2Model, ChunkedLossEqualsUnchunked) {
  // Chunks of 3 rows over 2 x 12 positions; rows 6..8 (a whole chunk) and a few more ignored.
  nn::Generator gen(6);
  Gpt2 m(test::tiny_config(), gen);
  Tensor ids = test::random_ids(2, 12, 50, 13);
  std::vector<int64_t> t = test::random_ids(2, 12, 50, 14).to_vector<int64_t>();
  for (size_t i : {6u, 7u, 8u, 13u, 23u}) t[i] = -100;
  Tensor targets = Tensor::from_vector(t, {2, 12});
  auto run = [&](int64_t chunk) {
    m.set_loss_chunk_elems(chunk);
    m.zero_grad();
    Tensor loss = m.loss(ids, targets);
    loss.backward();
    return std::vector<Tensor>{loss.detach(), m.parameter("wte.embeddings").grad(),
                               m.parameter("h.1.attn.value.kernel").grad()};
  };
  std::vector<Tensor> full = run(int64_t{1} << 24), chunked = run(3 * 50);
  // The same products summed in another grouping: f32 rounding of values near 1.
  const test::Tol tol{1e-5, 1e-7};
  for (size_t i = 0; i < full.size(); ++i) EXPECT_TRUE(test::all_close(chunked[i], full[i], tol, std::to_string(i)));
  // Every target ignored: 0, and backward still runs (zero gradients).
  m.zero_grad();
  Tensor none = m.loss(ids, Tensor::full({2, 12}, -100, DType::I64));
  EXPECT_EQ(none.item(), 0.0);
  none.backward();
  EXPECT_EQ(max(abs(m.parameter("h.0.mlp.fc.kernel").grad())).item(), 0.0);
  EXPECT_TRUE(throws_with([&] { m.set_loss_chunk_elems(0); }, {"chunk"}));
}

TEST(Gpt2Model, KvCacheStepsEqualFullForward) {
  Gpt2 m(test::tiny_config());
  m.eval();
  Tensor ids = test::random_ids(2, 12, 50, 5);
  Tensor full;
  {
    NoGradGuard ng;
    full = m.forward(ids);
  }
  // A 5-token prefill, then one token at a time.
  KvCache cache = m.make_cache(2, 16);
  std::vector<Tensor> parts{m.forward(ids.slice(1, 0, 5).contiguous(), cache)};
  EXPECT_EQ(cache.length(), 5);
  for (int64_t t = 5; t < 12; ++t) parts.push_back(m.forward(ids.slice(1, t, t + 1).contiguous(), cache));
  EXPECT_EQ(cache.length(), 12);
  EXPECT_TRUE(test::all_close(concat(parts, 1), full, kCacheTol, "cached vs full"));
  EXPECT_FALSE(parts.back().requires_grad());
  // reset() starts over at position 0.
  cache.reset();
  Tensor again = m.forward(ids.slice(1, 0, 1).contiguous(), cache);
  EXPECT_TRUE(test::all_close(again, full.slice(1, 0, 1), kCacheTol, "after reset"));
  // Errors: wrong batch, no room left, beyond n_ctx.
  EXPECT_TRUE(throws_with([&] { m.forward(test::random_ids(1, 1, 50, 6), cache); }, {"batch 1", "batch 2"}));
  KvCache small = m.make_cache(2, 4);
  m.forward(test::random_ids(2, 3, 50, 7), small);
  EXPECT_TRUE(throws_with([&] { m.forward(test::random_ids(2, 2, 50, 7), small); }, {"no room"}));
  EXPECT_TRUE(throws_with([&] { m.make_cache(1, 17); }, {"n_ctx = 16"}));
}

TEST(Gpt2Model, LoraOnQueryValueAndFcTrains) {
  nn::Generator gen(3);
  Gpt2 m(test::tiny_config(), gen);
  Tensor before = m.parameter("h.0.attn.query.kernel").clone();
  nn::LoraConfig lc;
  lc.r = 4, lc.alpha = 8.0, lc.seed = 11;
  std::vector<std::shared_ptr<nn::LoRA>> adapters;
  for (const char* path : {"h.0.attn.query", "h.0.attn.value", "h.1.mlp.fc"})
    adapters.push_back(nn::inject_lora(m, path, lc));
  // inject_lora freezes the whole model, earlier adapters included: turn the adapters back on.
  for (auto& a : adapters)
    for (Tensor t : {a->lora_A(), a->lora_B()}) t.requires_grad_(true);
  EXPECT_EQ(m.submodule("h.0.attn.query").type_name(), "LoRA");
  auto named = m.named_parameters();
  optim::NamedParameters trainable;
  for (auto& [n, t] : named)
    if (t.requires_grad()) trainable.emplace_back(n, t);
  ASSERT_EQ(trainable.size(), 6u);  // lora_A and lora_B of three layers
  optim::AdamW opt(trainable, {.lr = 5e-2, .weight_decay = 0.0});
  Tensor ids = test::random_ids(2, 12, 50, 8), targets = test::random_ids(2, 12, 50, 9);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    Tensor loss = m.loss(ids, targets);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  // 30 steps on a fixed batch from ~ln(50) = 3.9. The frozen tied head (wte, std 0.02) caps how
  // peaked the logits can get, so the adapters alone move the loss by a few tenths, not more.
  EXPECT_LT(last, first - 0.15) << "first " << first << " last " << last;
  EXPECT_TRUE(test::bitwise_equal(m.parameter("h.0.attn.query.base_layer.kernel"), before));
  for (auto& a : adapters) EXPECT_GT(max(abs(a->lora_B())).item(), 0.0);
}

namespace {

std::vector<float> train_losses(uint64_t dropout_seed, int steps) {
  nn::Generator gen(21);
  Gpt2 m(test::tiny_config(0.1), gen, dropout_seed);
  optim::AdamW opt(m.named_parameters(), {.lr = 3e-3, .beta2 = 0.95, .weight_decay = 0.1});
  Tensor ids = test::random_ids(2, 16, 50, 10), targets = test::random_ids(2, 16, 50, 11);
  std::vector<float> losses;
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    Tensor loss = m.loss(ids, targets);
    loss.backward();
    opt.step();
    losses.push_back(static_cast<float>(loss.item()));
  }
  return losses;
}

}  // namespace

TEST(Gpt2Model, SameSeedSameBitsWithDropout) {
  std::vector<float> a = train_losses(5, 6), b = train_losses(5, 6), c = train_losses(6, 6);
  ASSERT_EQ(a.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0) << "step " << i;
  EXPECT_NE(a, c);  // another dropout seed draws other masks
  EXPECT_LT(a.back(), a.front());
}

TEST(Gpt2Model, EvalModeHasNoDropout) {
  nn::Generator gen(4);
  Gpt2 m(test::tiny_config(0.5), gen);
  Tensor ids = test::random_ids(1, 6, 50, 12);
  NoGradGuard ng;
  Tensor t1 = m.forward(ids), t2 = m.forward(ids);
  EXPECT_FALSE(test::bitwise_equal(t1, t2));  // training mode: masks differ per call
  m.eval();
  EXPECT_TRUE(test::bitwise_equal(m.forward(ids), m.forward(ids)));
}
