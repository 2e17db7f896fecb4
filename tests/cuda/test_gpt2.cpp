// GPT-2 on the device under test against the CPU, on the PyTorch reference fixture: logits, loss,
// every parameter gradient, a KV-cached decode and a few AdamW steps with dropout.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/io/safetensors.h"
#include "models/gpt2/checkpoint.h"
#include "optim/adam.h"
#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;
using namespace lowrank::models::gpt2;

namespace {

const std::string kDir = std::string(LOWRANK_FIXTURES) + "/gpt2";

// A whole model is a chain of GEMMs, layer norms and attention: the per-op differences
// (kGemmF32) compound over 2 layers; logits ~0.5, gradients up to ~0.2 (the fixture's scale).
constexpr Tol kLogitsTol{1e-4, 1e-5};
constexpr Tol kGradTol{1e-3, 1e-6};
// AdamW amplifies tiny gradient differences of near-zero entries (it divides by sqrt(v)).
constexpr double kStepLossAtol = 1e-4;

struct Pair {
  std::unique_ptr<Gpt2> cpu, dev;
  Tensor ids, targets;
};

Pair load_pair() {
  Pair p;
  p.cpu = load_any(kDir);
  p.dev = load_any(kDir);
  p.dev->to(test_device());
  io::SafetensorsFile ref = io::load_safetensors(kDir + "/reference.safetensors");
  p.ids = ref.tensors.at("ids");
  p.targets = ref.tensors.at("targets");
  return p;
}

}  // namespace

TEST(CudaGpt2, LogitsLossAndGradientsMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  Pair p = load_pair();
  Tensor lc = p.cpu->forward(p.ids), ld = p.dev->forward(p.ids.to(test_device()));
  EXPECT_TRUE(ld.device() == test_device());
  EXPECT_TRUE(all_close(ld, lc, kLogitsTol));
  Tensor loss_c = p.cpu->loss(p.ids, p.targets);
  Tensor loss_d = p.dev->loss(p.ids.to(test_device()), p.targets.to(test_device()));
  EXPECT_NEAR(loss_d.item(), loss_c.item(), 1e-5 * std::abs(loss_c.item()));
  loss_c.backward();
  loss_d.backward();
  auto pc = p.cpu->named_parameters(), pd = p.dev->named_parameters();
  ASSERT_EQ(pc.size(), pd.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_TRUE(pd[i].second.grad().defined()) << pd[i].first;
    EXPECT_TRUE(all_close(pd[i].second.grad(), pc[i].second.grad(), kGradTol)) << pc[i].first;
  }
}

TEST(CudaGpt2, KvCachedDecodeMatchesCpu) {
  LR_REQUIRE_TEST_DEVICE();
  Pair p = load_pair();
  p.cpu->eval();
  p.dev->eval();
  KvCache cc = p.cpu->make_cache(2, 16), cd = p.dev->make_cache(2, 16);
  EXPECT_TRUE(cd.keys()[0].device() == test_device());
  for (int64_t t = 0; t < 16; t += (t < 4 ? 4 : 1)) {
    const int64_t n = t < 4 ? 4 : 1;
    Tensor step = p.ids.slice(1, t, t + n).contiguous();
    EXPECT_TRUE(all_close(p.dev->forward(step.to(test_device()), cd), p.cpu->forward(step, cc), kLogitsTol))
        << "position " << t;
  }
}

TEST(CudaGpt2, AdamWStepsWithDropoutMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  // Dropout masks come from Philox(seed, offset): the same on every device, so the runs agree.
  Config c = load_any(kDir)->config();
  c.dropout = 0.1;
  nn::Generator gc(5), gd(5);
  Gpt2 cpu(c, gc, 9), dev(c, gd, 9);
  dev.to(test_device());
  optim::AdamW oc(cpu.named_parameters(), {.lr = 3e-3, .weight_decay = 0.1});
  optim::AdamW od(dev.named_parameters(), {.lr = 3e-3, .weight_decay = 0.1});
  io::SafetensorsFile ref = io::load_safetensors(kDir + "/reference.safetensors");
  const Tensor ids = ref.tensors.at("ids"), targets = ref.tensors.at("targets");
  for (int i = 0; i < 4; ++i) {
    oc.zero_grad();
    od.zero_grad();
    Tensor a = cpu.loss(ids, targets), b = dev.loss(ids.to(test_device()), targets.to(test_device()));
    EXPECT_NEAR(b.item(), a.item(), kStepLossAtol) << "step " << i;
    a.backward();
    b.backward();
    oc.step();
    od.step();
  }
}
