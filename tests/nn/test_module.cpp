// Module: hierarchical names, state-dict round trips, strict loading errors, freeze, modes, moves.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "nn/layers.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/gradcheck.h"

using namespace lowrank;
using namespace lowrank::nn;

namespace {

// Flatten -> Dense(6 -> 5, relu) -> Dense(5 -> 3) inside a parent under "layers", like the MLP.
class Net : public Module {
 public:
  explicit Net(uint64_t seed) {
    Generator gen(seed);
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Flatten>());
    seq->add(std::make_shared<Dense>(6, 5, DenseOptions{.activation = Activation::Relu}, gen));
    seq->add(std::make_shared<Dense>(5, 3, DenseOptions{}, gen));
    layers_ = register_module("layers", seq);
  }
  Tensor forward(const Tensor& x) override { return (*layers_)(x); }
  std::string type_name() const override { return "Net"; }

 private:
  std::shared_ptr<Sequential> layers_;
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / ("nn_module_" + name)).string();
}

}  // namespace

using lowrank::test::error_of;

TEST(Module, HierarchicalNamesInRegistrationOrder) {
  Net net(1);
  std::vector<std::string> names;
  for (auto& [n, t] : net.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"layers.1.kernel", "layers.1.bias", "layers.2.kernel", "layers.2.bias"}));
  EXPECT_EQ(net.parameter("layers.1.kernel").shape(), (Shape{5, 6}));
  EXPECT_EQ(net.parameter("layers.2.bias").shape(), (Shape{3}));
  std::vector<std::string> mods;
  for (auto& [n, m] : net.named_modules()) mods.push_back(n + ":" + m->type_name());
  EXPECT_EQ(mods,
            (std::vector<std::string>{"layers:Sequential", "layers.0:Flatten", "layers.1:Dense", "layers.2:Dense"}));
  EXPECT_EQ(net.submodule("layers.2").type_name(), "Dense");
  EXPECT_NE(error_of([&] { net.submodule("layers.7"); }).find("layers.7"), std::string::npos);
  EXPECT_NE(error_of([&] { net.parameter("layers.1.weight"); }).find("layers.1.weight"), std::string::npos);
}

TEST(Module, ParameterCountTrainableAndTotal) {
  Net net(1);
  ParameterCount c = net.parameter_count();
  EXPECT_EQ(c.total, 6 * 5 + 5 + 5 * 3 + 3);
  EXPECT_EQ(c.trainable, c.total);
  net.submodule("layers.1").freeze();
  c = net.parameter_count();
  EXPECT_EQ(c.trainable, 5 * 3 + 3);
  EXPECT_EQ(net.trainable_parameters().size(), 2u);
  std::vector<std::string> names;
  for (auto& [n, t] : net.named_trainable_parameters()) {
    names.push_back(n);
    EXPECT_EQ(t.impl(), net.parameter(n).impl()) << n << ": a copy, not the module's own tensor";
  }
  EXPECT_EQ(names, (std::vector<std::string>{"layers.2.kernel", "layers.2.bias"}));
}

TEST(Module, FreezeStopsGradientsAndUnfreezeRestores) {
  Net net(2);
  Tensor x = Tensor::ones({4, 2, 3});
  net.freeze();
  net.submodule("layers.2").unfreeze();
  sum(net(x)).backward();
  EXPECT_FALSE(net.parameter("layers.1.kernel").grad().defined());
  EXPECT_TRUE(net.parameter("layers.2.kernel").grad().defined());
  net.unfreeze();
  EXPECT_EQ(net.parameter_count().trainable, net.parameter_count().total);
}

TEST(Module, StateDictRoundTripGivesSameOutputs) {
  Net a(3), b(4);
  Tensor x = Generator(9).uniform({7, 6}, -1, 1);
  ASSERT_NE(test::to_floats(a(x)), test::to_floats(b(x)));
  b.load_state_dict(a.state_dict());
  EXPECT_EQ(test::to_floats(a(x)), test::to_floats(b(x)));
}

TEST(Module, SaveLoadThroughSafetensors) {
  Net a(5), b(6);
  std::string path = temp_path("roundtrip.safetensors");
  a.save(path, {{"note", "hello"}});
  auto meta = b.load(path);
  EXPECT_EQ(meta.at("note"), "hello");
  for (auto& [name, t] : a.named_parameters())
    EXPECT_EQ(test::to_floats(t), test::to_floats(b.parameter(name))) << name;
  std::remove(path.c_str());
}

TEST(Module, StrictLoadNamesMissingExtraAndMisShapedTensors) {
  Net net(7);
  auto before = test::to_floats(net.parameter("layers.1.bias"));
  auto state = net.state_dict();
  state.erase("layers.2.bias");
  state["layers.9.kernel"] = Tensor::zeros({2, 2});
  state["layers.1.kernel"] = Tensor::zeros({6, 5});
  state["layers.1.bias"] = Tensor::full({5}, 42.0);
  std::string msg = error_of([&] { net.load_state_dict(state); });
  EXPECT_NE(msg.find("missing tensor 'layers.2.bias'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected tensor 'layers.9.kernel'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'layers.1.kernel' has shape [5, 6] in the model but [6, 5]"), std::string::npos) << msg;
  // Refused as a whole: nothing was copied.
  EXPECT_EQ(test::to_floats(net.parameter("layers.1.bias")), before);
}

TEST(Module, NonStrictLoadReportsMissingAndUnexpected) {
  Net a(8), b(9);
  auto state = a.state_dict();
  state.erase("layers.2.bias");
  state["extra"] = Tensor::zeros({1});
  LoadReport r = b.load_state_dict(state, /*strict=*/false);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"layers.2.bias"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"extra"}));
  EXPECT_EQ(test::to_floats(a.parameter("layers.2.kernel")), test::to_floats(b.parameter("layers.2.kernel")));
  // Mis-shaped tensors are refused even when not strict.
  state["layers.2.kernel"] = Tensor::zeros({3, 4});
  EXPECT_NE(error_of([&] { b.load_state_dict(state, false); }).find("[3, 5] in the model but [3, 4]"),
            std::string::npos);
}

TEST(Module, LoadFromFileWithWrongShapeNamesFileTensorAndShapes) {
  Net net(10);
  std::string path = temp_path("wrong.safetensors");
  auto state = net.state_dict();
  state["layers.2.kernel"] = Tensor::zeros({4, 5});
  io::save_safetensors(path, state);
  std::string msg = error_of([&] { net.load(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("layers.2.kernel"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(Module, ToDTypeKeepsHandlesValid) {
  Net net(11);
  Tensor handle = net.parameter("layers.1.kernel");
  auto before = test::to_floats(handle);
  net.to(DType::F64);
  EXPECT_EQ(handle.dtype(), DType::F64);
  EXPECT_TRUE(handle.requires_grad());
  std::vector<double> after = handle.to_vector<double>();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(static_cast<float>(after[i]), before[i]);
  Tensor y = net(Tensor::ones({2, 6}, DType::F64));
  EXPECT_EQ(y.dtype(), DType::F64);
}

TEST(Module, TrainEvalPropagates) {
  Net net(12);
  EXPECT_TRUE(net.submodule("layers.1").is_training());
  net.eval();
  EXPECT_FALSE(net.submodule("layers.1").is_training());
  net.train();
  EXPECT_TRUE(net.submodule("layers.2").is_training());
}

TEST(Module, ReplaceSubmoduleTakesPartInForward) {
  Net net(13);
  Tensor x = Tensor::ones({2, 6});
  Generator gen(99);
  auto replacement =
      std::make_shared<Dense>(5, 3, DenseOptions{.kernel_init = Init::zeros(), .bias_init = Init::ones()}, gen);
  net.replace_submodule("layers.2", replacement);
  EXPECT_EQ(test::to_floats(net(x)), std::vector<float>(6, 1.0f));
  EXPECT_EQ(&net.submodule("layers.2"), replacement.get());
  EXPECT_NE(error_of([&] { net.replace_submodule("layers.5", replacement); }).find("layers.5"), std::string::npos);
}

TEST(Module, DuplicateAndDottedNamesAreRefused) {
  class Bad : public Module {
   public:
    std::string type_name() const override { return "Bad"; }
    void add(const std::string& n) { register_parameter(n, Tensor::zeros({1})); }
  } bad;
  bad.add("w");
  EXPECT_NE(error_of([&] { bad.add("w"); }).find("already registered"), std::string::npos);
  EXPECT_NE(error_of([&] { bad.add("a.b"); }).find("dot-free"), std::string::npos);
}

TEST(Module, SummaryListsLayersAndTotals) {
  Net net(14);
  std::string s = net.summary();
  EXPECT_NE(s.find("Dense(6 -> 5, relu)"), std::string::npos) << s;
  EXPECT_NE(s.find("total params: 53"), std::string::npos) << s;
}
