// Bad input: every user mistake throws lowrank::Error whose message names the op and the problem
// (shapes, dtypes, devices, axes, sizes, ids, labels).
#include <gtest/gtest.h>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::throws_with;

TEST(Errors, ShapeMismatches) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  EXPECT_TRUE(throws_with([&] { add(a, b); }, {"add", "[2, 3]", "[4]", "broadcast"}));
  EXPECT_TRUE(throws_with([&] { mul(b, a); }, {"mul", "[4]", "[2, 3]"}));
  EXPECT_TRUE(throws_with([&] { maximum(a, b); }, {"maximum", "[2, 3]", "[4]"}));
  EXPECT_TRUE(throws_with([&] { matmul(a, Tensor::zeros({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]"}));
  EXPECT_TRUE(throws_with([&] { matmul(a, b); }, {"matmul", "at least 2 axes", "[4]"}));
  EXPECT_TRUE(throws_with(
      [&] {
        matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 1}));
      },
      {"matmul", "[2]", "[3]", "broadcast"}));
  EXPECT_TRUE(throws_with([&] { a.reshape({4, 2}); }, {"reshape", "[2, 3]", "[4, 2]"}));
  EXPECT_TRUE(throws_with([&] { a.reshape({-1, -1}); }, {"reshape", "more than one -1"}));
  EXPECT_TRUE(throws_with([&] { a.expand({3, 3}); }, {"expand", "[2, 3]", "[3, 3]"}));
  EXPECT_TRUE(throws_with([&] { a.permute({0}); }, {"permute", "1 axes", "[2, 3]"}));
  EXPECT_TRUE(throws_with([&] { a.permute({1, 1}); }, {"permute", "repeated"}));
  EXPECT_TRUE(throws_with([&] { concat({a, Tensor::zeros({3, 3})}, 1); }, {"concat", "[2, 3]", "[3, 3]", "axis 1"}));
  EXPECT_TRUE(throws_with([&] { split(a, {1, 1}, 1); }, {"split", "[1, 1]", "2", "[2, 3]", "3"}));
  EXPECT_TRUE(throws_with([&] { masked_fill(a, Tensor::zeros({3, 3}), 0); }, {"masked_fill", "[3, 3]", "[2, 3]"}));
  EXPECT_TRUE(throws_with([&] { Tensor::from_vector(std::vector<float>{1, 2}, {3}); }, {"from_data", "2", "[3]"}));
  EXPECT_TRUE(throws_with([&] { a.item(); }, {"item", "[2, 3]", "6 elements"}));
  EXPECT_TRUE(throws_with([&] { Tensor::empty({2, -1}); }, {"empty", "negative", "[2, -1]"}));
  EXPECT_TRUE(throws_with([&] { a.slice(1, 0, 2, 0); }, {"slice", "step", "0"}));
}

TEST(Errors, DtypeMismatches) {
  Tensor f = Tensor::zeros({2}), d = Tensor::zeros({2}, DType::F64), i = Tensor::zeros({2}, DType::I64);
  EXPECT_TRUE(throws_with([&] { add(f, d); }, {"add", "dtype mismatch", "f32", "f64", "[2]"}));
  EXPECT_TRUE(throws_with([&] { matmul(f.reshape({1, 2}), d.reshape({2, 1})); }, {"matmul", "dtype mismatch"}));
  EXPECT_TRUE(throws_with([&] { sum(i); }, {"sum", "f32 or f64", "i64"}));
  EXPECT_TRUE(throws_with([&] { softmax(i); }, {"softmax", "i64"}));
  EXPECT_TRUE(throws_with([&] { f.data<double>(); }, {"data", "f64", "f32"}));
  EXPECT_TRUE(throws_with([&] { embedding(Tensor::zeros({3, 2}), f); }, {"embedding", "int64", "f32"}));
  EXPECT_TRUE(throws_with([&] { cross_entropy(Tensor::zeros({2, 3}), f); }, {"cross_entropy", "int64", "f32"}));
  EXPECT_TRUE(throws_with(
      [&] {
        layer_norm(Tensor::zeros({2, 3}), Tensor::ones({3}, DType::F64), Tensor());
      },
      {"layer_norm", "dtype mismatch"}));
  EXPECT_TRUE(throws_with([&] { rand({2}, 1, 0, DType::I64); }, {"rand", "f32 or f64", "i64"}));
}

TEST(Errors, Devices) {
  if (cuda_available()) {
    Tensor c = Tensor::zeros({2}), g = Tensor::zeros({2}, DType::F32, Device::cuda());
    EXPECT_TRUE(throws_with([&] { add(c, g); }, {"add", "device mismatch", "cpu", "cuda:0"}));
    EXPECT_TRUE(throws_with([&] { matmul(c.reshape({1, 2}), g.reshape({2, 1})); }, {"matmul", "device mismatch"}));
    EXPECT_TRUE(throws_with(
        [&] {
          embedding(c.reshape({2, 1}), Tensor::zeros({1}, DType::I64, Device::cuda()));
        },
        {"embedding", "cpu", "cuda:0"}));
  } else {
    // Without a GPU, asking for one is the user error.
    EXPECT_TRUE(throws_with([&] { Tensor::zeros({2}, DType::F32, Device::cuda()); }, {"cuda:0"}));
  }
  EXPECT_TRUE(throws_with([&] { Device::parse("tpu"); }, {"unknown device", "tpu"}));
  EXPECT_TRUE(throws_with([&] { Device::parse("cuda:x"); }, {"unknown device", "cuda:x"}));
}

TEST(Errors, OutOfRangeAxes) {
  Tensor a = Tensor::zeros({2, 3});
  EXPECT_TRUE(throws_with([&] { sum(a, {2}); }, {"sum", "axis 2", "rank 2"}));
  EXPECT_TRUE(throws_with([&] { mean(a, {-3}); }, {"mean", "axis -3", "rank 2"}));
  EXPECT_TRUE(throws_with([&] { sum(a, {1, -1}); }, {"sum", "repeated"}));
  EXPECT_TRUE(throws_with([&] { max(a, {5}); }, {"max", "axis 5"}));
  EXPECT_TRUE(throws_with([&] { argmax(a, 2); }, {"argmax", "axis 2"}));
  EXPECT_TRUE(throws_with([&] { softmax(a, 2); }, {"softmax", "axis 2", "rank 2"}));
  EXPECT_TRUE(throws_with([&] { log_softmax(a, -3); }, {"log_softmax", "axis -3"}));
  EXPECT_TRUE(throws_with([&] { a.transpose(0, 2); }, {"transpose", "axis 2"}));
  EXPECT_TRUE(throws_with([&] { a.slice(3, 0, 1); }, {"slice", "axis 3"}));
  EXPECT_TRUE(throws_with([&] { a.select(0, 2); }, {"select", "index 2", "[2, 3]"}));
  EXPECT_TRUE(throws_with([&] { concat({a}, 2); }, {"concat", "axis 2"}));
  EXPECT_TRUE(throws_with([&] { a.unsqueeze(3); }, {"unsqueeze", "axis 3"}));
  EXPECT_TRUE(throws_with([&] { a.size(2); }, {"size", "axis 2"}));
}

TEST(Errors, NnOpInputs) {
  Tensor logits = Tensor::zeros({4, 5});
  EXPECT_TRUE(throws_with([&] { cross_entropy(logits, Tensor::zeros({3}, DType::I64)); },
                          {"cross_entropy", "labels [3]", "logits [4, 5]"}));
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 1, 5, 2}, {4});
  EXPECT_TRUE(
      throws_with([&] { cross_entropy(logits, bad); }, {"cross_entropy", "label 5", "position 2", "5 classes"}));
  Tensor neg = Tensor::from_vector(std::vector<int64_t>{0, -1, 1, 2}, {4});
  EXPECT_TRUE(throws_with([&] { cross_entropy(logits, neg); }, {"cross_entropy", "label -1", "ignore_index -100"}));
  EXPECT_TRUE(
      throws_with([&] { layer_norm(logits, Tensor::ones({4}), Tensor()); }, {"layer_norm", "weight [4]", "[5]"}));
  EXPECT_TRUE(throws_with([&] { layer_norm(logits, Tensor(), Tensor::ones({5, 1})); }, {"layer_norm", "bias [5, 1]"}));
  EXPECT_TRUE(throws_with([&] { embedding(Tensor::zeros({3}), Tensor::zeros({1}, DType::I64)); },
                          {"embedding", "[vocab, dim]", "[3]"}));
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 2, 7}, {3});
  EXPECT_TRUE(throws_with(
      [&] {
        embedding(Tensor::zeros({4, 2}), ids);
      },
      {"embedding", "id 7", "position 2", "vocabulary of 4"}));
  EXPECT_TRUE(throws_with([&] { set_num_threads(-1); }, {"set_num_threads", "-1"}));
}

TEST(Errors, MessagesCarryTheSourceLocation) {
  try {
    add(Tensor::zeros({2}), Tensor::zeros({3}));
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("core/"), std::string::npos) << e.what();
  }
}
