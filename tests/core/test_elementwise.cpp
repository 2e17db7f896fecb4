// Elementwise ops against hand-worked values and a plain host loop: broadcasting, scalar forms,
// comparisons, masked_fill, non-contiguous inputs (transposed, sliced with a step, expanded)
// and odd sizes, in f32 and f64.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::strided_values;
using lowrank::test::tol_for;

namespace {

class Elementwise : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  Tensor vec(const std::vector<double>& v, const Shape& s) const { return Tensor::from_vector(v, s).to(dt()); }
};

double gelu_ref(double x) {
  return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

}  // namespace

TEST_P(Elementwise, BinaryHandWorked) {
  Tensor a = vec({1, 2, 3, 4}, {4}), b = vec({2, 4, 0.5, -1}, {4});
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(add(a, b), {3, 6, 3.5, 3}, t));
  EXPECT_TRUE(all_close(sub(a, b), {-1, -2, 2.5, 5}, t));
  EXPECT_TRUE(all_close(mul(a, b), {2, 8, 1.5, -4}, t));
  EXPECT_TRUE(all_close(div(a, b), {0.5, 0.5, 6, -4}, t));
  EXPECT_TRUE(all_close(pow(a, b), {1, 16, std::sqrt(3.0), 0.25}, t));
  EXPECT_TRUE(all_close(maximum(a, b), {2, 4, 3, 4}, t));
  EXPECT_TRUE(all_close(minimum(a, b), {1, 2, 0.5, -1}, t));
  EXPECT_TRUE(all_close(a + b * 2.0 - 1.0, {4, 9, 3, 1}, t));
  EXPECT_TRUE(all_close(-a / 2.0, {-0.5, -1, -1.5, -2}, t));
}

TEST_P(Elementwise, ScalarForms) {
  Tensor a = vec({1, 2, 4}, {3});
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(add(a, 1.5), {2.5, 3.5, 5.5}, t));
  EXPECT_TRUE(all_close(sub(a, 1.0), {0, 1, 3}, t));
  EXPECT_TRUE(all_close(mul(a, -2.0), {-2, -4, -8}, t));
  EXPECT_TRUE(all_close(div(a, 4.0), {0.25, 0.5, 1}, t));
  EXPECT_TRUE(all_close(pow(a, 2.0), {1, 4, 16}, t));
  EXPECT_TRUE(all_close(pow(a, 0.5), {1, std::sqrt(2.0), 2}, t));
  EXPECT_TRUE(all_close(rsub(10.0, a), {9, 8, 6}, t));
  EXPECT_TRUE(all_close(rdiv(8.0, a), {8, 4, 2}, t));
  EXPECT_TRUE(all_close(1.0 - a, {0, -1, -3}, t));
  EXPECT_TRUE(all_close(2.0 / a, {2, 1, 0.5}, t));
}

TEST_P(Elementwise, UnaryHandWorked) {
  std::vector<double> xs{-2, -0.5, 0.25, 1, 3};
  Tensor x = vec(xs, {5});
  Tensor pos = vec({0.25, 1, 4}, {3});
  const double t = tol_for(dt()) * 10;  // libm f32 transcendental functions are within a few ulps
  auto ref = [&](double (*f)(double)) {
    std::vector<double> r;
    for (double v : xs) r.push_back(f(v));
    return r;
  };
  EXPECT_TRUE(all_close(neg(x), {2, 0.5, -0.25, -1, -3}, t));
  EXPECT_TRUE(all_close(exp(x), ref([](double v) { return std::exp(v); }), t));
  EXPECT_TRUE(all_close(tanh(x), ref([](double v) { return std::tanh(v); }), t));
  EXPECT_TRUE(all_close(sigmoid(x), ref([](double v) { return 1 / (1 + std::exp(-v)); }), t));
  EXPECT_TRUE(all_close(relu(x), {0, 0, 0.25, 1, 3}, t));
  EXPECT_TRUE(all_close(gelu(x), ref(gelu_ref), t));
  EXPECT_TRUE(all_close(abs(x), {2, 0.5, 0.25, 1, 3}, t));
  EXPECT_TRUE(all_close(log(pos), {std::log(0.25), 0, std::log(4.0)}, t));
  EXPECT_TRUE(all_close(sqrt(pos), {0.5, 1, 2}, t));
  EXPECT_TRUE(all_close(rsqrt(pos), {2, 1, 0.5}, t));
  // GPT-2's gelu at 1: 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411919906082768
  EXPECT_NEAR(gelu(vec({1}, {1})).item(), 0.8411919906082768, t);
}

TEST_P(Elementwise, ComparisonsAndMaskedFill) {
  Tensor a = vec({1, 2, 3}, {3}), b = vec({2, 2, 2}, {3});
  EXPECT_TRUE(all_close(eq(a, b), {0, 1, 0}, 0));
  EXPECT_TRUE(all_close(gt(a, b), {0, 0, 1}, 0));
  EXPECT_TRUE(all_close(lt(a, b), {1, 0, 0}, 0));
  EXPECT_TRUE(all_close(ge(a, b), {0, 1, 1}, 0));
  EXPECT_TRUE(all_close(le(a, b), {1, 1, 0}, 0));
  EXPECT_EQ(eq(a, b).dtype(), dt());
  // Causal mask: upper triangle (j > i) filled, mask [3, 3] broadcast over a batch of 2.
  Tensor x = Tensor::ones({2, 3, 3}, dt());
  Tensor mask = Tensor::from_data<uint8_t>(std::vector<uint8_t>{0, 1, 1, 0, 0, 1, 0, 0, 0}, {3, 3});
  Tensor y = masked_fill(x, mask, -1e9);
  EXPECT_TRUE(all_close(y.select(0, 1), {1, -1e9, -1e9, 1, 1, -1e9, 1, 1, 1}, tol_for(dt())));
  EXPECT_TRUE(all_close(masked_fill(vec({5, 6}, {2}), vec({1, 0}, {2}), 0), {0, 6}, 0));
}

TEST_P(Elementwise, Broadcasting) {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = vec({10, 20, 30}, {3}), col = vec({100, 200}, {2, 1}), s = vec({0.5}, {});
  const double t = tol_for(dt());
  EXPECT_TRUE(all_close(add(a, row), {11, 22, 33, 14, 25, 36}, t));
  EXPECT_TRUE(all_close(add(row, a), {11, 22, 33, 14, 25, 36}, t));
  EXPECT_TRUE(all_close(mul(a, col), {100, 200, 300, 800, 1000, 1200}, t));
  EXPECT_TRUE(all_close(sub(a, s), {0.5, 1.5, 2.5, 3.5, 4.5, 5.5}, t));
  Tensor outer = mul(col, row);  // [2,1] x [3] -> [2,3]
  EXPECT_EQ(outer.shape(), (Shape{2, 3}));
  EXPECT_TRUE(all_close(outer, {1000, 2000, 3000, 2000, 4000, 6000}, t));
  Tensor b3 = vec({1, -1}, {2, 1, 1});
  EXPECT_EQ(mul(b3, a).shape(), (Shape{2, 2, 3}));
  EXPECT_TRUE(all_close(mul(b3, a), {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}, t));
}

TEST_P(Elementwise, NonContiguousInputsMatchHostLoop) {
  // 37 x 13 is odd in both axes; views are transposed, sliced with a step and expanded.
  Tensor base = randn({37, 13}, 7, 0, dt());
  Tensor other = randn({13, 37}, 8, 0, dt());
  Tensor t = base.mT();                                                          // [13, 37] transposed
  Tensor s = randn({26, 74}, 9, 0, dt()).slice(0, 0, 26, 2).slice(1, 1, 74, 2);  // [13, 37] stepped
  Tensor e = randn({37}, 10, 0, dt()).expand({13, 37});                          // expanded rows
  const double tol = tol_for(dt());
  std::vector<double> vt = strided_values(t), vs = strided_values(s), ve = strided_values(e),
                      vo = other.to_vector<double>();
  auto check = [&](const Tensor& got, const std::function<double(size_t)>& f) {
    std::vector<double> want(vt.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = f(i);
    EXPECT_TRUE(all_close(got, want, tol * 10));
  };
  check(add(t, s), [&](size_t i) { return vt[i] + vs[i]; });
  check(mul(s, e), [&](size_t i) { return vs[i] * ve[i]; });
  check(sub(e, t), [&](size_t i) { return ve[i] - vt[i]; });
  check(maximum(t, other), [&](size_t i) { return std::max(vt[i], vo[i]); });
  check(exp(s), [&](size_t i) { return std::exp(vs[i]); });
  check(relu(t), [&](size_t i) { return std::max(vt[i], 0.0); });
  check(mul(t, 3.0), [&](size_t i) { return vt[i] * 3; });
  check(gelu(e), [&](size_t i) { return gelu_ref(ve[i]); });
  Tensor out = add(t, s);
  EXPECT_TRUE(out.is_contiguous());
}

TEST_P(Elementwise, EmptyAndScalarTensors) {
  Tensor e = Tensor::empty({0, 4}, dt());
  EXPECT_EQ(add(e, e).shape(), (Shape{0, 4}));
  EXPECT_EQ(exp(e).numel(), 0);
  Tensor s = vec({3}, {});
  EXPECT_EQ(mul(s, s).item(), 9.0);
  EXPECT_EQ(add(e, vec({1, 2, 3, 4}, {4})).shape(), (Shape{0, 4}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Elementwise, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });
