// CUDA against CPU for reductions: sum / mean / max over every set of axes (with keepdim, on
// transposed views, and long enough to take the split paths), their backward, and argmax.
#include <gtest/gtest.h>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

enum class Red { Sum, Mean, Max };

Tensor apply(Red r, const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  switch (r) {
    case Red::Sum:
      return sum(x, axes, keepdim);
    case Red::Mean:
      return mean(x, axes, keepdim);
    case Red::Max:
      return max(x, axes, keepdim);
  }
  return x;
}
const char* red_name(Red r) {
  return r == Red::Sum ? "sum" : r == Red::Mean ? "mean" : "max";
}

struct AxesCase {
  const char* name;
  std::vector<int64_t> axes;
};
const std::vector<AxesCase>& axes_cases() {
  static const std::vector<AxesCase> kCases = {
      {"all", {}}, {"a0", {0}}, {"a1", {1}}, {"a2", {2}}, {"a02", {0, 2}}, {"a12", {1, -1}}, {"a01", {0, 1}},
  };
  return kCases;
}

using ReduceParam = std::tuple<Red, DType, size_t, bool>;  // op, dtype, axes, transposed input

class CudaReduce : public ::testing::TestWithParam<ReduceParam> {};

TEST_P(CudaReduce, ForwardAndBackwardMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [r, dtype, ai, transposed] = GetParam();
  const AxesCase& ac = axes_cases()[ai];
  const uint64_t seed = 9000 + ai * 3 + (transposed ? 100 : 0) + static_cast<uint64_t>(r) * 1000;
  // [6, 35, 17], or the same shape as a permuted view of [17, 6, 35].
  Tensor base = random_cpu(transposed ? Shape{17, 6, 35} : Shape{6, 35, 17}, dtype, seed);
  auto view = [&](const Tensor& t) { return transposed ? t.permute({1, 2, 0}) : t; };
  for (bool keepdim : {false, true}) {
    Tensor xc = cpu_leaf(base), xd = on_device(base, true);
    Tensor yc = apply(r, view(xc), ac.axes, keepdim), yd = apply(r, view(xd), ac.axes, keepdim);
    EXPECT_TRUE(all_close(yd, yc, row_tol(dtype))) << red_name(r) << " " << ac.name << " keepdim " << keepdim;
    Tensor g = random_cpu(yc.shape(), dtype, seed + 5);
    sum(mul(yc, g)).backward();
    sum(mul(yd, on_device(g))).backward();
    EXPECT_TRUE(all_close(xd.grad(), xc.grad(), row_tol(dtype))) << red_name(r) << " backward " << ac.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Axes, CudaReduce,
                         ::testing::Combine(::testing::Values(Red::Sum, Red::Mean, Red::Max),
                                            ::testing::Values(DType::F32, DType::F64), case_indices(axes_cases()),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<ReduceParam>& info) {
                           return std::string(red_name(std::get<0>(info.param))) + "_" +
                                  dtype_label(std::get<1>(info.param)) + "_" +
                                  axes_cases()[std::get<2>(info.param)].name +
                                  (std::get<3>(info.param) ? "_permuted" : "");
                         });

// Shapes that take the split (two-pass) paths: few outputs, long reductions, both directions.
struct LongCase {
  const char* name;
  Shape shape;
  std::vector<int64_t> axes;
};

class CudaReduceLong : public ::testing::TestWithParam<std::tuple<size_t, DType>> {};

const std::vector<LongCase>& long_cases() {
  static const std::vector<LongCase> kCases = {
      {"rows_split", {3, 200003}, {1}}, {"cols_split", {100003, 3}, {0}},   {"all_1m", {1 << 20}, {}},
      {"short_rows", {5000, 3}, {1}},   {"middle_axis", {7, 4099, 9}, {1}},
  };
  return kCases;
}

TEST_P(CudaReduceLong, SumAndMaxMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype] = GetParam();
  const LongCase& c = long_cases()[ci];
  // A shifted mean makes plain f32 accumulation visibly worse than the f64 both sides use.
  Tensor x = random_cpu(c.shape, dtype, 7000 + ci, 1.0, 3.0);
  Tensor xd = on_device(x);
  EXPECT_TRUE(all_close(sum(xd, c.axes), sum(x, c.axes), row_tol(dtype))) << c.name;
  EXPECT_TRUE(all_close(max(xd, c.axes), max(x, c.axes), row_tol(dtype))) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaReduceLong,
                         ::testing::Combine(case_indices(long_cases()), ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, DType>>& info) {
                           return std::string(long_cases()[std::get<0>(info.param)].name) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

class CudaArgmax : public ::testing::TestWithParam<DType> {};

TEST_P(CudaArgmax, EveryAxisWithTiesMatchesCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  // Values on a coarse grid: many ties, and the first index must win on both sides.
  Tensor coarse = random_cpu({9, 40, 33}, DType::F64, 4242, 2.0).to(DType::I64).to(t);
  Tensor fine = random_cpu({5, 2000}, t, 4243);
  Tensor dc = on_device(coarse), df = on_device(fine);
  for (int64_t axis = 0; axis < 3; ++axis) {
    EXPECT_TRUE(all_equal<int64_t>(argmax(dc, axis), argmax(coarse, axis))) << "axis " << axis;
    EXPECT_TRUE(
        all_equal<int64_t>(argmax(dc.permute({2, 0, 1}), axis, true), argmax(coarse.permute({2, 0, 1}), axis, true)))
        << "permuted, axis " << axis;
  }
  EXPECT_TRUE(all_equal<int64_t>(argmax(df, 1), argmax(fine, 1)));  // long rows: the block path
  EXPECT_TRUE(all_equal<int64_t>(argmax(df, 0), argmax(fine, 0)));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaArgmax, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

}  // namespace
