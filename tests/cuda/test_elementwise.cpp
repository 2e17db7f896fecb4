// CUDA against CPU for the elementwise family through the op API: unary and binary ops (forward
// and backward) on contiguous, transposed, strided, broadcast and permuted views; copy with casts;
// fill; loops with more axes than one launch takes.
#include <gtest/gtest.h>

#include <functional>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

// A view of a base tensor; the same view is taken of the CPU base and of its device copy.
struct Layout {
  const char* name;
  Shape base;
  std::function<Tensor(const Tensor&)> view;
};

const std::vector<Layout>& layouts() {
  static const std::vector<Layout> kLayouts = {
      {"contiguous", {7, 33}, [](const Tensor& t) { return t; }},
      {"transposed", {33, 7}, [](const Tensor& t) { return t.mT(); }},
      {"strided", {9, 70}, [](const Tensor& t) { return t.slice(0, 1, 8).slice(1, 2, 68, 2); }},
      {"broadcast",
       {1, 33},
       [](const Tensor& t) {
         return t.expand({7, 33});
       }},
      {"permuted4d",
       {5, 3, 4, 7},
       [](const Tensor& t) {
         return t.permute({3, 1, 0, 2});
       }},
      {"odd1d", {1001}, [](const Tensor& t) { return t; }},
      {"scalar", {}, [](const Tensor& t) { return t; }},
  };
  return kLayouts;
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> f;
  bool positive;  // needs inputs > 0
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> kCases = {
      {"neg", [](const Tensor& x) { return neg(x); }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, false},
      {"log", [](const Tensor& x) { return log(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, false},
      {"gelu", [](const Tensor& x) { return gelu(x); }, false},
      {"abs", [](const Tensor& x) { return abs(x); }, false},
      {"add_scalar", [](const Tensor& x) { return add(x, 0.75); }, false},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -1.5); }, false},
      {"pow_scalar", [](const Tensor& x) { return pow(x, 2.5); }, true},
      {"square", [](const Tensor& x) { return pow(x, 2.0); }, false},
      {"rsub_scalar", [](const Tensor& x) { return rsub(2.0, x); }, false},
      {"rdiv_scalar", [](const Tensor& x) { return rdiv(3.0, x); }, true},
  };
  return kCases;
}

using UnaryParam = std::tuple<size_t, DType, size_t>;

class CudaUnary : public ::testing::TestWithParam<UnaryParam> {};

TEST_P(CudaUnary, ForwardAndBackwardMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype, li] = GetParam();
  const UnaryCase& c = unary_cases()[ci];
  const Layout& L = layouts()[li];
  const uint64_t seed = 1000 + ci * 31 + li;
  Tensor base = random_cpu(L.base, dtype, seed);
  if (c.positive) base = add(abs(base), 0.1);
  Tensor gbase = random_cpu(L.view(base).shape(), dtype, seed + 7);

  Tensor xc = cpu_leaf(base), xd = on_device(base, true);
  Tensor yc = c.f(L.view(xc)), yd = c.f(L.view(xd));
  EXPECT_TRUE(all_close(yd, yc, elem_tol(dtype))) << c.name << " forward, " << L.name;
  sum(mul(yc, gbase)).backward();
  sum(mul(yd, on_device(gbase))).backward();
  // Broadcast views sum the gradient over the expanded axis: a reduction's tolerance.
  EXPECT_TRUE(all_close(xd.grad(), xc.grad(), row_tol(dtype))) << c.name << " backward, " << L.name;
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaUnary,
                         ::testing::Combine(case_indices(unary_cases()), ::testing::Values(DType::F32, DType::F64),
                                            case_indices(layouts())),
                         [](const ::testing::TestParamInfo<UnaryParam>& info) {
                           return std::string(unary_cases()[std::get<0>(info.param)].name) + "_" +
                                  dtype_label(std::get<1>(info.param)) + "_" + layouts()[std::get<2>(info.param)].name;
                         });

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
  bool positive_a;
  bool differentiable;
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> kCases = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, false, true},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, false, true},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, false, true},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, add(abs(b), 0.5)); }, false, true},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, true, true},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, false, true},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, false, true},
      {"gt", [](const Tensor& a, const Tensor& b) { return gt(a, b); }, false, false},
      {"le", [](const Tensor& a, const Tensor& b) { return le(a, b); }, false, false},
      {"eq_rounded", [](const Tensor& a, const Tensor& b) { return eq(a, b); }, false, false},
      // x = a + b has the full broadcast shape, so the mask (from b) always broadcasts to it.
      {"masked_fill", [](const Tensor& a, const Tensor& b) { return masked_fill(add(a, b), gt(b, mul(b, 0.0)), -7.0); },
       false, true},
  };
  return kCases;
}

// Operand shapes (b broadcasts against a) and whether a is a transposed view.
struct BroadcastCase {
  const char* name;
  Shape a, b;
  bool transpose_a;
};

const std::vector<BroadcastCase>& broadcast_cases() {
  static const std::vector<BroadcastCase> kCases = {
      {"same", {13, 29}, {13, 29}, false},     {"row", {13, 29}, {29}, false},
      {"col", {13, 1}, {1, 29}, false},        {"scalar", {13, 29}, {}, false},
      {"transposed", {29, 13}, {13, 1}, true}, {"batch3d", {3, 1, 17}, {4, 1}, false},
  };
  return kCases;
}

using BinaryParam = std::tuple<size_t, DType, size_t>;

class CudaBinary : public ::testing::TestWithParam<BinaryParam> {};

TEST_P(CudaBinary, ForwardAndBackwardMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype, bi] = GetParam();
  const BinaryCase& c = binary_cases()[ci];
  const BroadcastCase& bc = broadcast_cases()[bi];
  const uint64_t seed = 5000 + ci * 17 + bi;
  Tensor a = random_cpu(bc.a, dtype, seed), b = random_cpu(bc.b, dtype, seed + 1);
  if (c.positive_a) a = add(abs(a), 0.2);
  if (std::string(c.name) == "eq_rounded") {  // ties on purpose: 0/1 values
    a = gt(random_cpu(bc.a, dtype, seed + 2), random_cpu(bc.a, dtype, seed + 3));
    b = gt(random_cpu(bc.b, dtype, seed + 4), random_cpu(bc.b, dtype, seed + 5));
  }
  auto view_a = [&](const Tensor& t) { return bc.transpose_a ? t.mT() : t; };
  Tensor ac = cpu_leaf(a, c.differentiable), bcpu = cpu_leaf(b, c.differentiable);
  Tensor ad = on_device(a, c.differentiable), bd = on_device(b, c.differentiable);
  Tensor yc = c.f(view_a(ac), bcpu), yd = c.f(view_a(ad), bd);
  EXPECT_TRUE(all_close(yd, yc, elem_tol(dtype))) << c.name << " forward, " << bc.name;
  if (!c.differentiable) return;
  Tensor g = random_cpu(yc.shape(), dtype, seed + 9);
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  if (ac.grad().defined()) {
    EXPECT_TRUE(all_close(ad.grad(), ac.grad(), row_tol(dtype))) << c.name << " grad a";
  }
  if (bcpu.grad().defined()) {
    EXPECT_TRUE(all_close(bd.grad(), bcpu.grad(), row_tol(dtype))) << c.name << " grad b";
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, CudaBinary,
                         ::testing::Combine(case_indices(binary_cases()), ::testing::Values(DType::F32, DType::F64),
                                            case_indices(broadcast_cases())),
                         [](const ::testing::TestParamInfo<BinaryParam>& info) {
                           return std::string(binary_cases()[std::get<0>(info.param)].name) + "_" +
                                  dtype_label(std::get<1>(info.param)) + "_" +
                                  broadcast_cases()[std::get<2>(info.param)].name;
                         });

using CastParam = std::tuple<DType, DType>;

class CudaCast : public ::testing::TestWithParam<CastParam> {};

// Values are whole numbers in [0, 200]: exact in every dtype, so casts must agree bit for bit.
TEST_P(CudaCast, CopyWithCastMatchesCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [from, to] = GetParam();
  Tensor whole = abs(random_cpu({11, 23}, DType::F64, 77, 60.0)).to(DType::I64).to(DType::F64);
  whole = minimum(whole, Tensor::scalar(200.0, DType::F64));
  Tensor src = whole.to(from);
  Tensor dev = on_device(src);
  EXPECT_TRUE(all_equal<double>(dev.to(to), src.to(to)));
  EXPECT_TRUE(all_equal<double>(dev.mT().to(to), src.mT().to(to)));  // strided source
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, CudaCast,
    ::testing::Combine(::testing::Values(DType::F32, DType::F64, DType::I64, DType::I32, DType::U8),
                       ::testing::Values(DType::F32, DType::F64, DType::I64, DType::I32, DType::U8)),
    [](const ::testing::TestParamInfo<CastParam>& info) {
      return std::string(dtype_name(std::get<0>(info.param))) + "_to_" + dtype_name(std::get<1>(info.param));
    });

class CudaCopyFill : public ::testing::TestWithParam<DType> {};

TEST_P(CudaCopyFill, StridedCopyFillAndManyAxes) {
  LR_REQUIRE_TEST_DEVICE();
  const DType t = GetParam();
  // copy_ into a strided slice of a larger tensor, from a transposed view.
  Tensor big = random_cpu({10, 40}, t, 300), part = random_cpu({15, 4}, t, 301);
  Tensor big_d = on_device(big);
  big.slice(1, 3, 33, 2).slice(0, 2, 6).copy_(part.mT());
  big_d.slice(1, 3, 33, 2).slice(0, 2, 6).copy_(on_device(part).mT());
  EXPECT_TRUE(all_equal<double>(big_d, big));
  // fill_ on a strided view leaves the rest alone; zero fill on a contiguous one.
  big.slice(0, 1, 9, 3).fill_(-2.5);
  big_d.slice(0, 1, 9, 3).fill_(-2.5);
  EXPECT_TRUE(all_equal<double>(big_d, big));
  big.slice(0, 4, 6).zero_();
  big_d.slice(0, 4, 6).zero_();
  EXPECT_TRUE(all_equal<double>(big_d, big));
  // Ten axes of size 2 reversed: no two neighbours merge, more than one launch can index.
  Tensor ten = random_cpu(Shape(10, 2), t, 302);
  const std::vector<int> rev = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  EXPECT_TRUE(all_equal<double>(on_device(ten).permute(rev).contiguous(), ten.permute(rev).contiguous()));
  EXPECT_TRUE(all_close(exp(on_device(ten).permute(rev)), exp(ten.permute(rev)), elem_tol(t)));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaCopyFill, ::testing::Values(DType::F32, DType::F64),
                         [](const ::testing::TestParamInfo<DType>& info) { return dtype_label(info.param); });

}  // namespace
