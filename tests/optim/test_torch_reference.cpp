// Adam, AdamW, SGD and clip_grad_norm against torch (tests/reference/adam_reference.py): the same
// initial parameters and per-step gradients, every one of the 10 steps compared.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "optim/optim.h"
#include "support/compare.h"

namespace lowrank {
namespace {

using nlohmann::json;

// torch and we round the same operations in the same order, but its vectorised CPU kernels fuse
// some multiply-adds (FMA) where we do not, which moves the last bit now and then; observed: f64
// parameters within 1 ulp (~6e-17), f32 parameters within 6e-8. Moments see up to ~3e-6 relative
// in f32 where a sum of mixed-sign gradients cancels, hence their 10x rtol below.
constexpr double kF64Atol = 1e-13, kF64Rtol = 1e-12;
constexpr double kF32Atol = 1e-7, kF32Rtol = 1e-6;

const io::SafetensorsFile& fixture() {
  static const io::SafetensorsFile f =
      io::load_safetensors(std::string(LOWRANK_FIXTURES) + "/optim/adam_reference.safetensors");
  return f;
}
const Tensor& fx(const std::string& name) {
  auto it = fixture().tensors.find(name);
  if (it == fixture().tensors.end()) throw std::runtime_error("fixture has no tensor " + name);
  return it->second;
}

std::unique_ptr<optim::Optimizer> make(const json& c, optim::NamedParameters params) {
  std::string kind = c.at("optimizer");
  if (kind == "sgd") {
    optim::SgdOptions o;
    o.lr = c.at("lr");
    o.momentum = c.at("momentum");
    o.dampening = c.at("dampening");
    o.weight_decay = c.at("weight_decay");
    o.nesterov = c.at("nesterov");
    return std::make_unique<optim::SGD>(std::move(params), o);
  }
  optim::AdamOptions o;
  o.lr = c.at("lr");
  o.beta1 = c.at("betas").at(0);
  o.beta2 = c.at("betas").at(1);
  o.eps = c.at("eps");
  o.weight_decay = c.at("weight_decay");
  if (kind == "adamw") return std::make_unique<optim::AdamW>(std::move(params), o);
  return std::make_unique<optim::Adam>(std::move(params), o);
}

class TorchReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchReference, EveryStepMatches) {
  const std::string tag = GetParam();  // "f64" or "f32"
  const double atol = tag == "f64" ? kF64Atol : kF32Atol, rtol = tag == "f64" ? kF64Rtol : kF32Rtol;
  json configs = json::parse(fixture().metadata.at("configs"));
  const int64_t steps = std::stoll(fixture().metadata.at("steps"));
  ASSERT_GE(configs.size(), 6u);
  for (auto it = configs.begin(); it != configs.end(); ++it) {
    const std::string cfg = it.key();
    SCOPED_TRACE(cfg + " " + tag);
    optim::NamedParameters params;
    for (const char* n : {"w", "b"}) params.emplace_back(n, fx("init." + tag + "." + n).clone());
    auto opt = make(it.value(), params);
    for (int64_t k = 0; k < steps; ++k) {
      for (auto& [n, p] : params) p.set_grad(fx("grads." + tag + "." + n).select(0, k).clone());
      opt->step();
      for (auto& [n, p] : params)
        EXPECT_TRUE(test::all_close(p, fx(cfg + "." + tag + "." + n).select(0, k), {rtol, atol},
                                    cfg + " " + n + " after step " + std::to_string(k + 1)));
    }
    EXPECT_EQ(opt->step_count(), steps);
    // The optimizer's buffers match torch's state after the last step.
    std::map<std::string, Tensor> state = opt->state_dict();
    int compared = 0;
    for (const char* n : {"w", "b"})
      for (const char* buf : {"exp_avg", "exp_avg_sq", "momentum_buffer"}) {
        auto r = fixture().tensors.find(cfg + "." + tag + "." + n + "." + buf);
        if (r == fixture().tensors.end()) continue;
        ASSERT_TRUE(state.count(std::string(n) + "." + buf)) << buf;
        EXPECT_TRUE(test::all_close(state.at(std::string(n) + "." + buf), r->second, {rtol * 10, atol},
                                    cfg + " " + n + "." + buf));
        ++compared;
      }
    EXPECT_EQ(compared == 0, it.value().at("optimizer") == "sgd" && it.value().at("momentum") == 0.0);
  }
}

TEST_P(TorchReference, ClipGradNormMatches) {
  const std::string tag = GetParam();
  const double atol = tag == "f64" ? kF64Atol : kF32Atol, rtol = tag == "f64" ? kF64Rtol : kF32Rtol;
  const double max_norm = std::stod(fixture().metadata.at("clip_max_norm"));
  json types = json::parse(fixture().metadata.at("clip_norm_types"));
  ASSERT_EQ(types.size(), 4u);
  for (auto it = types.begin(); it != types.end(); ++it) {
    double q = it.value().is_string() ? optim::kInfNorm : it.value().get<double>();
    std::vector<Tensor> ps;
    for (const char* n : {"w", "b"}) {
      Tensor p = fx("init." + tag + "." + n).clone();
      p.set_grad(fx("grads." + tag + "." + n).select(0, 0).clone());  // clipping writes in place
      ps.push_back(p);
    }
    double norm = optim::clip_grad_norm(ps, max_norm, q);
    double want = fx("clip." + it.key() + "." + tag + ".norm").item();
    EXPECT_NEAR(norm, want, atol + rtol * want) << it.key();
    EXPECT_TRUE(
        test::all_close(ps[0].grad(), fx("clip." + it.key() + "." + tag + ".w"), {rtol, atol}, "clip w " + it.key()));
    EXPECT_TRUE(
        test::all_close(ps[1].grad(), fx("clip." + it.key() + "." + tag + ".b"), {rtol, atol}, "clip b " + it.key()));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TorchReference, ::testing::Values("f64", "f32"));

}  // namespace
}  // namespace lowrank
