// LoRA layers: forward math for Dense and EinsumDense, init options, rank checks, the base-scale
// schedule, merge/unmerge, adapter files in PEFT's names, injection into the MLP, gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/mlp.h"
#include "nn/lora.h"
#include "support/compare.h"
#include "support/gradcheck.h"

using namespace lowrank;
using namespace lowrank::nn;
using lowrank::test::max_abs_diff;

namespace {

std::shared_ptr<Dense> make_dense(int64_t in, int64_t out, Activation act = Activation::Relu, uint64_t seed = 3) {
  Generator g(seed);
  DenseOptions o;
  o.activation = act;
  o.bias_init = Init::uniform(0.5);
  return std::make_shared<Dense>(in, out, o, g);
}

void randomize_b(LoRA& l, uint64_t seed) {
  NoGradGuard ng;
  Tensor b = l.lora_B();
  b.copy_(randn(b.shape(), seed));
}

}  // namespace

TEST(LoRA, DenseForwardMatchesTheFormula) {
  auto d = make_dense(12, 9);
  LoraConfig c;
  c.r = 3, c.alpha = 6, c.base_scale = BaseScaleSchedule::constant(0.9);
  LoRA l(d, c);
  randomize_b(l, 7);
  Tensor x = randn({5, 12}, 11);
  Tensor ref = relu(add(add(mul(matmul(x, d->kernel().mT()), 0.9), d->bias()),
                        mul(matmul(matmul(x, l.lora_A().mT()), l.lora_B().mT()), 2.0)));
  EXPECT_LT(max_abs_diff(l.forward(x), ref), 1e-5);
  EXPECT_DOUBLE_EQ(l.scale(), 2.0);
}

TEST(LoRA, KaimingInitStartsAtTheBaseLayer) {
  auto d = make_dense(16, 8, Activation::Linear);
  LoraConfig c;
  c.r = 4;
  LoRA l(d, c);
  Tensor x = randn({3, 16}, 5);
  EXPECT_LT(max_abs_diff(l.forward(x), d->forward(x)), 1e-6);
  // A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0.
  auto a = l.lora_A().to_vector<double>();
  for (double v : a) EXPECT_LE(std::abs(v), 1.0 / std::sqrt(16.0));
  EXPECT_EQ(max_abs_diff(l.lora_B(), Tensor::zeros({8, 4})), 0.0);
  EXPECT_FALSE(d->kernel().requires_grad()) << "the base must be frozen";
  EXPECT_TRUE(l.lora_A().requires_grad());
}

TEST(LoRA, RsLoraScale) {
  LoraConfig c;
  c.r = 16, c.alpha = 8, c.use_rslora = true;
  EXPECT_DOUBLE_EQ(c.scale(), 2.0);
  c.use_rslora = false;
  EXPECT_DOUBLE_EQ(c.scale(), 0.5);
}

TEST(LoRA, PissaSplitsWIntoTopRAndResidual) {
  auto d = make_dense(10, 7, Activation::Linear);
  Tensor w0 = d->kernel().clone();
  LoraConfig c;
  c.r = 3, c.alpha = 3, c.init = LoraInit::Pissa;
  LoRA l(d, c);
  // residual + scale·BA = W exactly, and BA is W's best rank-3 approximation.
  Tensor recon = add(d->kernel(), l.delta_weight());
  EXPECT_LT(max_abs_diff(recon, w0), 1e-5);
  SvdResult sv = svd(w0);
  SvdResult sr = svd(d->kernel());
  auto s0 = sv.s.to_vector<double>(), s1 = sr.s.to_vector<double>();
  // The residual's largest singular values are W's 4th, 5th, ...
  for (size_t i = 0; i + 3 < s0.size(); ++i) EXPECT_NEAR(s1[i], s0[i + 3], 1e-4);
  Tensor x = randn({4, 10}, 1);
  EXPECT_LT(max_abs_diff(l.forward(x), add(matmul(x, w0.mT()), d->bias())), 1e-5);
}

TEST(LoRA, RankOutOfRangeIsRefused) {
  for (int64_t r : {0, -1, 9}) {
    LoraConfig c;
    c.r = r;
    try {
      LoRA l(make_dense(12, 8), c);
      FAIL() << "rank " << r << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("min(in, out) = 8"), std::string::npos) << e.what();
    }
  }
}

TEST(LoRA, ScheduleShapes) {
  BaseScaleSchedule s{BaseScaleSchedule::Kind::Cosine, 1.0, 0.0, 100};
  EXPECT_DOUBLE_EQ(s.at(0), 1.0);
  EXPECT_NEAR(s.at(50), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(s.at(100), 0.0);
  EXPECT_DOUBLE_EQ(s.at(1000), 0.0);
  BaseScaleSchedule lin{BaseScaleSchedule::Kind::Linear, 1.0, 0.2, 10};
  EXPECT_NEAR(lin.at(5), 0.6, 1e-12);
  EXPECT_DOUBLE_EQ(BaseScaleSchedule::constant(0.9).at(12345), 0.9);
  auto d = make_dense(6, 6, Activation::Linear);
  LoraConfig c;
  c.r = 2, c.base_scale = s;
  LoRA l(d, c);
  l.advance(100);
  Tensor x = randn({2, 6}, 3);
  // base_scale 0 and B = 0: only the bias is left.
  EXPECT_LT(max_abs_diff(l.forward(x), d->bias().expand({2, 6})), 1e-6);
}

TEST(LoRA, MergeUnmergeIsExact) {
  auto d = make_dense(20, 14);
  Tensor w0 = d->kernel().clone();
  LoraConfig c;
  c.r = 5, c.alpha = 10, c.base_scale = BaseScaleSchedule::constant(0.9);
  LoRA l(d, c);
  randomize_b(l, 9);
  Tensor x = randn({6, 20}, 4);
  Tensor y = l.forward(x);
  l.merge();
  EXPECT_TRUE(l.merged());
  EXPECT_LT(max_abs_diff(l.forward(x), y), 1e-5);
  l.unmerge();
  EXPECT_LT(max_abs_diff(d->kernel(), w0), 1e-6);
  EXPECT_LT(max_abs_diff(l.forward(x), y), 1e-6);
  EXPECT_THROW(l.unmerge(), Error);
}

TEST(LoRA, EinsumDenseQkvAndOutputProjection) {
  // GPT-2's query projection [B, T, C] -> [B, T, heads, head_dim] and output projection back.
  Generator g(21);
  EinsumDenseOptions o;
  o.bias_axes = "de";
  auto qkv = std::make_shared<EinsumDense>("abc,cde->abde", Shape{-1, 2, 4}, Shape{-1, -1, 8}, o, g);
  {
    NoGradGuard ng;
    Tensor bias = qkv->bias();
    bias.copy_(randn(bias.shape(), 1));
  }
  LoraConfig c;
  c.r = 3, c.alpha = 3, c.base_scale = BaseScaleSchedule::constant(0.5);
  LoRA l(qkv, c);
  EXPECT_EQ(l.in_features(), 8);
  EXPECT_EQ(l.out_features(), 8);
  randomize_b(l, 2);
  Tensor x = randn({3, 5, 8}, 7);
  Tensor delta_kernel = l.delta_weight().mT().reshape({8, 2, 4});  // [c, d, e]
  Tensor ref = add(add(mul(einsum("abc,cde->abde", x, qkv->kernel()), 0.5), einsum("abc,cde->abde", x, delta_kernel)),
                   qkv->bias());
  Tensor y = l.forward(x);
  EXPECT_EQ(y.shape(), (Shape{3, 5, 2, 4}));
  EXPECT_LT(max_abs_diff(y, ref), 1e-5);
  l.merge();
  EXPECT_LT(max_abs_diff(l.forward(x), ref), 1e-5);
  l.unmerge();

  auto proj =
      std::make_shared<EinsumDense>("abcd,cde->abe", Shape{-1, 6}, Shape{-1, -1, 2, 4}, EinsumDenseOptions{}, g);
  LoraConfig c2;
  c2.r = 2;
  LoRA lp(proj, c2);
  EXPECT_EQ(lp.in_features(), 8);
  EXPECT_EQ(lp.out_features(), 6);
  randomize_b(lp, 5);
  Tensor h = randn({3, 5, 2, 4}, 8);
  Tensor ref2 = add(einsum("abcd,cde->abe", h, proj->kernel()),
                    einsum("abcd,cde->abe", h, lp.delta_weight().mT().reshape({2, 4, 6})));
  EXPECT_LT(max_abs_diff(lp.forward(h), ref2), 1e-5);
}

TEST(LoRA, UnsupportedEinsumIsRefused) {
  Generator g(1);
  auto e = std::make_shared<EinsumDense>("abc,bcd->abd", Shape{-1, 4}, Shape{-1, 3, 5}, EinsumDenseOptions{}, g);
  LoraConfig c;
  c.r = 2;
  EXPECT_THROW(LoRA(e, c), Error);
}

TEST(LoRA, GradientsOfAdapterAndInputF64) {
  Generator g(4);
  DenseOptions o;
  o.dtype = DType::F64;
  o.activation = Activation::Tanh;
  auto d = std::make_shared<Dense>(7, 5, o, g);
  LoraConfig c;
  c.r = 2, c.alpha = 4, c.base_scale = BaseScaleSchedule::constant(0.9);
  auto l = std::make_shared<LoRA>(d, c);
  randomize_b(*l, 3);
  Tensor a = l->lora_A().detach().clone(), b = l->lora_B().detach().clone();
  Tensor w = d->kernel().detach(), bias = d->bias().detach();
  EXPECT_TRUE(lowrank::test::gradcheck(
      [&](const std::vector<Tensor>& in) { return tanh(lora_linear(in[0], w, bias, in[1], in[2], 2.0, 0.9)); },
      {lowrank::test::random_f64({3, 7}, 1), a, b}));
}

TEST(LoRA, AdapterFilesUsePeftNamesAndRoundTrip) {
  models::Mlp mlp;
  LoraConfig c;
  c.r = 4, c.alpha = 8, c.base_scale = BaseScaleSchedule::constant(0.9), c.seed = 3;
  auto lora = inject_lora(mlp, models::kMlpHiddenLayer, c);
  randomize_b(*lora, 6);
  auto params = mlp.named_parameters();
  int trainable = 0;
  for (auto& [name, t] : params)
    if (t.requires_grad()) {
      ++trainable;
      EXPECT_TRUE(name == "layers.2.lora_A.weight" || name == "layers.2.lora_B.weight") << name;
    }
  EXPECT_EQ(trainable, 2);
  auto dir = std::filesystem::temp_directory_path() / ("lowrank_lora_" + std::to_string(::getpid()));
  save_lora_adapter(dir.string(), {{models::kMlpHiddenLayer, lora.get()}});
  io::SafetensorsFile f = io::load_safetensors((dir / "adapter_model.safetensors").string());
  ASSERT_EQ(f.tensors.count("layers.2.lora_A.weight"), 1u);
  ASSERT_EQ(f.tensors.count("layers.2.lora_B.weight"), 1u);
  std::ifstream cfg(dir / "adapter_config.json");
  std::string text((std::istreambuf_iterator<char>(cfg)), {});
  EXPECT_NE(text.find("\"lora_alpha\": 8"), std::string::npos) << text;
  EXPECT_NE(text.find("\"target_modules\""), std::string::npos);

  models::Mlp other;
  auto lora2 = inject_lora(other, models::kMlpHiddenLayer, c);
  lora2->load_adapter_state(f.tensors, models::kMlpHiddenLayer);
  EXPECT_EQ(max_abs_diff(lora2->lora_B(), lora->lora_B()), 0.0);
  // An adapter whose shapes do not fit the layer, and a file with the wrong names.
  LoraConfig c8 = c;
  c8.r = 8;
  models::Mlp third;
  auto lora3 = inject_lora(third, models::kMlpHiddenLayer, c8);
  EXPECT_THROW(lora3->load_adapter_state(f.tensors, models::kMlpHiddenLayer), Error);
  EXPECT_THROW(lora2->load_adapter_state(f.tensors, "layers.1"), Error);
  std::filesystem::remove_all(dir);
}

TEST(LoRA, InjectingSeveralLayersKeepsEveryAdapterTrainable) {
  models::Mlp mlp;
  LoraConfig c;
  c.r = 2;
  inject_lora(mlp, "layers.1", c);
  inject_lora(mlp, models::kMlpHiddenLayer, c);
  std::vector<std::string> trainable;
  for (auto& [name, t] : mlp.named_trainable_parameters()) trainable.push_back(name);
  const std::vector<std::string> expected = {"layers.1.lora_A.weight", "layers.1.lora_B.weight",
                                             "layers.2.lora_A.weight", "layers.2.lora_B.weight"};
  EXPECT_EQ(trainable, expected);
}

TEST(LoRA, InjectRefusesOtherModules) {
  models::Mlp mlp;
  LoraConfig c;
  EXPECT_THROW(inject_lora(mlp, "layers.0", c), Error);  // the Flatten
  EXPECT_THROW(inject_lora(mlp, "layers.9", c), Error);
}
