// CUDA against CPU for the neural-network ops through the op API: softmax / log_softmax (any
// axis, short and long rows), fused cross-entropy with an ignore index, layer norm, embedding
// (with repeated ids and bad ids), dropout masks; forward and backward, f32 and f64.
#include <gtest/gtest.h>

#include <sstream>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

// Rows short enough for a warp each, long enough for a 256- and a 512-thread block.
const std::vector<Shape>& row_shapes() {
  static const std::vector<Shape> kShapes = {{13, 10}, {3, 7, 33}, {4, 2000}, {3, 20011}, {1, 1}};
  return kShapes;
}

std::string shape_label(const Shape& s) {
  std::ostringstream os;  // (string concatenation here trips a GCC 12 -Wrestrict false positive)
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "x" : "") << s[i];
  return s.empty() ? "scalar" : os.str();
}

using RowParam = std::tuple<size_t, DType>;

class CudaSoftmax : public ::testing::TestWithParam<RowParam> {};

TEST_P(CudaSoftmax, SoftmaxAndLogSoftmaxMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [si, dtype] = GetParam();
  const Shape& shape = row_shapes()[si];
  Tensor x = random_cpu(shape, dtype, 100 + si, 3.0);
  Tensor g = random_cpu(shape, dtype, 200 + si);
  for (bool log_form : {false, true}) {
    for (int64_t axis : {int64_t{-1}, int64_t{0}}) {
      Tensor xc = cpu_leaf(x), xd = on_device(x, true);
      Tensor yc = log_form ? log_softmax(xc, axis) : softmax(xc, axis);
      Tensor yd = log_form ? log_softmax(xd, axis) : softmax(xd, axis);
      EXPECT_TRUE(all_close(yd, yc, row_tol(dtype))) << (log_form ? "log_softmax" : "softmax") << " axis " << axis;
      sum(mul(yc, g)).backward();
      sum(mul(yd, on_device(g))).backward();
      EXPECT_TRUE(all_close(xd.grad(), xc.grad(), row_tol(dtype)))
          << (log_form ? "log_softmax" : "softmax") << " backward, axis " << axis;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSoftmax,
                         ::testing::Combine(case_indices(row_shapes()), ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<RowParam>& info) {
                           return shape_label(row_shapes()[std::get<0>(info.param)]) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

class CudaCrossEntropy : public ::testing::TestWithParam<std::tuple<Shape, DType>> {};

TEST_P(CudaCrossEntropy, LossAndGradientMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [shape, dtype] = GetParam();
  const int64_t n = shape[0], c = shape[1];
  constexpr int64_t kIgnore = -100;
  Tensor logits = random_cpu(shape, dtype, 300 + n, 4.0);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  const std::vector<double> u = rand({n}, 301 + n, 0, DType::F64).to_vector<double>();
  for (int64_t i = 0; i < n; ++i)  // every fifth row ignored
    labels[static_cast<size_t>(i)] = i % 5 == 3 ? kIgnore : static_cast<int64_t>(u[static_cast<size_t>(i)] * c);
  Tensor lab = Tensor::from_vector(labels, {n});
  Tensor xc = cpu_leaf(logits), xd = on_device(logits, true);
  Tensor lc = cross_entropy(xc, lab, kIgnore), ld = cross_entropy(xd, on_device(lab), kIgnore);
  EXPECT_TRUE(all_close(ld, lc, row_tol(dtype))) << "loss";
  lc.backward();
  ld.backward();
  EXPECT_TRUE(all_close(xd.grad(), xc.grad(), row_tol(dtype))) << "grad";
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaCrossEntropy,
                         ::testing::Combine(::testing::Values(Shape{37, 10}, Shape{8, 5000}, Shape{6, 50257}),
                                            ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<std::tuple<Shape, DType>>& info) {
                           return shape_label(std::get<0>(info.param)) + "_" + dtype_label(std::get<1>(info.param));
                         });

class CudaLayerNorm : public ::testing::TestWithParam<std::tuple<Shape, DType>> {};

TEST_P(CudaLayerNorm, ForwardAndBackwardMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [shape, dtype] = GetParam();
  const int64_t d = shape.back();
  // A large mean: the two-pass variance matters.
  Tensor x = random_cpu(shape, dtype, 400 + d, 2.0, 50.0);
  Tensor w = random_cpu({d}, dtype, 401 + d, 0.5, 1.0), b = random_cpu({d}, dtype, 402 + d);
  Tensor g = random_cpu(shape, dtype, 403 + d);
  Tensor xc = cpu_leaf(x), wc = cpu_leaf(w), bc = cpu_leaf(b);
  Tensor xd = on_device(x, true), wd = on_device(w, true), bd = on_device(b, true);
  Tensor yc = layer_norm(xc, wc, bc, 1e-5), yd = layer_norm(xd, wd, bd, 1e-5);
  EXPECT_TRUE(all_close(yd, yc, row_tol(dtype))) << "forward";
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  EXPECT_TRUE(all_close(xd.grad(), xc.grad(), row_tol(dtype))) << "gx";
  EXPECT_TRUE(all_close(wd.grad(), wc.grad(), row_tol(dtype))) << "gw";
  EXPECT_TRUE(all_close(bd.grad(), bc.grad(), row_tol(dtype))) << "gb";
  // Without weight and bias.
  Tensor y0c = layer_norm(x, Tensor(), Tensor(), 1e-5), y0d = layer_norm(on_device(x), Tensor(), Tensor(), 1e-5);
  EXPECT_TRUE(all_close(y0d, y0c, row_tol(dtype))) << "no affine";
}

// [2000, 48] splits the weight/bias gradient over blocks; [8, 3000] uses block-wide rows.
INSTANTIATE_TEST_SUITE_P(Shapes, CudaLayerNorm,
                         ::testing::Combine(::testing::Values(Shape{33, 64}, Shape{4, 5, 24}, Shape{8, 3000},
                                                              Shape{2000, 48}),
                                            ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<std::tuple<Shape, DType>>& info) {
                           return shape_label(std::get<0>(info.param)) + "_" + dtype_label(std::get<1>(info.param));
                         });

class CudaEmbedding : public ::testing::TestWithParam<DType> {};

TEST_P(CudaEmbedding, GatherScatterAndBadIds) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  const int64_t vocab = 50, d = 37;
  Tensor w = random_cpu({vocab, d}, t, 500);
  std::vector<int64_t> ids(7 * 9);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7) % 13);  // many repeats
  ids.back() = vocab - 1;
  Tensor idt = Tensor::from_vector(ids, {7, 9});
  Tensor wc = cpu_leaf(w), wd = on_device(w, true);
  Tensor yc = embedding(wc, idt), yd = embedding(wd, on_device(idt));
  EXPECT_TRUE(all_equal<double>(yd, yc)) << "gather";
  Tensor g = random_cpu(yc.shape(), t, 501);
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  // Atomic adds land in any order: a reduction's tolerance.
  EXPECT_TRUE(all_close(wd.grad(), wc.grad(), row_tol(t))) << "scatter-add";
  for (int64_t bad : {vocab, int64_t{-1}}) {
    ids[5] = bad;
    try {
      embedding(wd, Tensor::from_vector(ids, {7, 9}).to(test_device()));
      FAIL() << "no error for id " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaEmbedding, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

class CudaDropout : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDropout, MasksAreEqualAcrossDevices) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  Tensor x = random_cpu({33, 65}, t, 600);
  for (double p : {0.1, 0.5, 0.9}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{12345}}) {
      Tensor yc = dropout(x, p, true, 77, offset), yd = dropout(on_device(x), p, true, 77, offset);
      // Same mask: zero in the same places, and the kept values scaled identically.
      EXPECT_TRUE(all_equal<double>(eq(yd, mul(yd, 0.0)).to(Device::cpu()), eq(yc, mul(yc, 0.0)))) << "p " << p;
      EXPECT_TRUE(all_close(yd, yc, elem_tol(t))) << "p " << p;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDropout, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

}  // namespace
