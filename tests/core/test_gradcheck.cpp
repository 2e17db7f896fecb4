// Central-difference gradient checks in f64 (tests/support/gradcheck.h) for every differentiable
// op of core/ops.h and every view op: random shapes, broadcasting, strided inputs.
#include <gtest/gtest.h>

#include <random>

#include "core/ops.h"
#include "support/gradcheck.h"

using namespace lowrank;
using lowrank::test::gradcheck;
using lowrank::test::random_f64;
using Inputs = std::vector<Tensor>;

namespace {

// Inputs in [0.5, 2.5): the domain of log, sqrt, rsqrt, pow and div's denominator.
Tensor positive_f64(const Shape& s, uint64_t seed) {
  return add(mul(rand(s, seed, 0, DType::F64), 2.0), 0.5);
}

// Random shapes of rank 1..3 with sizes 1..4, and a shape broadcastable to it.
struct ShapeGen {
  std::mt19937 rng{20240601};
  Shape shape() {
    Shape s(std::uniform_int_distribution<int>(1, 3)(rng));
    for (auto& d : s) d = std::uniform_int_distribution<int>(1, 4)(rng);
    return s;
  }
  // Drops some leading axes and sets some others to 1.
  Shape broadcastable(const Shape& s) {
    Shape b(s.begin() + std::uniform_int_distribution<int>(0, static_cast<int>(s.size()))(rng), s.end());
    for (auto& d : b)
      if (rng() % 3 == 0) d = 1;
    return b;
  }
};

constexpr int kRandomDraws = 4;  // shapes per op: enough to mix ranks and broadcasting, fast

}  // namespace

LR_GRADCHECK_TEST(Gradcheck, BinaryOpsWithBroadcasting, OpKind::Add, OpKind::Sub, OpKind::Mul, OpKind::Div, OpKind::Pow,
                  OpKind::Maximum, OpKind::Minimum) {
  ShapeGen g;
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>> ops{
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
  };
  for (int draw = 0; draw < kRandomDraws; ++draw) {
    Shape sa = g.shape(), sb = g.broadcastable(sa);
    if (draw % 2) std::swap(sa, sb);
    for (auto& [name, op] : ops) {
      Tensor a = positive_f64(sa, 100 + draw), b = positive_f64(sb, 200 + draw);
      EXPECT_TRUE(gradcheck([&](const Inputs& x) { return op(x[0], x[1]); }, {a, b}))
          << name << " " << shape_str(sa) << " " << shape_str(sb);
    }
  }
}

LR_GRADCHECK_TEST(Gradcheck, ScalarForms, OpKind::AddScalar, OpKind::MulScalar, OpKind::PowScalar, OpKind::RSubScalar,
                  OpKind::RDivScalar) {
  Tensor a = positive_f64({2, 3}, 1);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops{
      {"add", [](const Tensor& x) { return add(x, 1.5); }},   {"sub", [](const Tensor& x) { return sub(x, 0.5); }},
      {"mul", [](const Tensor& x) { return mul(x, -3.0); }},  {"div", [](const Tensor& x) { return div(x, 4.0); }},
      {"pow", [](const Tensor& x) { return pow(x, 2.5); }},   {"pow2", [](const Tensor& x) { return pow(x, 2.0); }},
      {"rsub", [](const Tensor& x) { return rsub(2.0, x); }}, {"rdiv", [](const Tensor& x) { return rdiv(3.0, x); }},
  };
  for (auto& [name, op] : ops) EXPECT_TRUE(gradcheck([&](const Inputs& x) { return op(x[0]); }, {a})) << name;
}

LR_GRADCHECK_TEST(Gradcheck, UnaryOps, OpKind::Neg, OpKind::Exp, OpKind::Log, OpKind::Sqrt, OpKind::Rsqrt, OpKind::Tanh,
                  OpKind::Sigmoid, OpKind::Relu, OpKind::Gelu, OpKind::Abs) {
  ShapeGen g;
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> any_sign{
      {"neg", [](const Tensor& x) { return neg(x); }},   {"exp", [](const Tensor& x) { return exp(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }}, {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }}, {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
  };
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> positive{
      {"log", [](const Tensor& x) { return log(x); }},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }},
  };
  for (int draw = 0; draw < kRandomDraws; ++draw) {
    Shape s = g.shape();
    for (auto& [name, op] : any_sign)
      EXPECT_TRUE(gradcheck([&](const Inputs& x) { return op(x[0]); }, {random_f64(s, 300 + draw)})) << name;
    for (auto& [name, op] : positive)
      EXPECT_TRUE(gradcheck([&](const Inputs& x) { return op(x[0]); }, {positive_f64(s, 400 + draw)})) << name;
  }
}

LR_GRADCHECK_TEST(Gradcheck, MaskedFill, OpKind::MaskedFill) {
  Tensor mask = Tensor::from_vector(std::vector<double>{1, 0, 0, 1, 0, 1}, {2, 1, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& x) { return masked_fill(x[0], mask, -5.0); }, {random_f64({2, 4, 3}, 1)}));
}

LR_GRADCHECK_TEST(Gradcheck, Reductions, OpKind::Sum, OpKind::Mean, OpKind::Max) {
  ShapeGen g;
  for (int draw = 0; draw < kRandomDraws; ++draw) {
    Shape s = g.shape();
    Tensor x = random_f64(s, 500 + draw);
    const int64_t last = static_cast<int64_t>(s.size()) - 1;
    EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum(v[0]); }, {x}));
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return sum(v[0], {last}, draw % 2); }, {x}));
    EXPECT_TRUE(gradcheck([](const Inputs& v) { return mean(v[0]); }, {x}));
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return mean(v[0], {0}, draw % 2); }, {x}));
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return max(v[0], {last}, draw % 2); }, {x}));
    EXPECT_TRUE(gradcheck([](const Inputs& v) { return max(v[0]); }, {x}));
    Shape to = g.broadcastable(s);
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return sum_to(v[0], to); }, {x})) << shape_str(s) << shape_str(to);
  }
  Tensor x3 = random_f64({2, 3, 4}, 7);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return sum(v[0], {0, 2}, true); }, {x3}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return max(v[0], {0, 2}); }, {x3}));
}

LR_GRADCHECK_TEST(Gradcheck, MatmulShapesAndViews, OpKind::Matmul) {
  EXPECT_TRUE(
      gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); }, {random_f64({3, 4}, 1), random_f64({4, 2}, 2)}));
  // Batched with broadcast batch axes, and a 2-D weight folded over a batch.
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); },
                        {random_f64({2, 1, 3, 4}, 3), random_f64({3, 4, 2}, 4)}));
  EXPECT_TRUE(
      gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); }, {random_f64({2, 3, 4}, 5), random_f64({4, 5}, 6)}));
  // Transposed operands reach the GEMM as flags; a transposed leaf and a sliced leaf.
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return matmul(v[0].mT(), v[1].mT()); },
                        {random_f64({4, 3}, 7), random_f64({2, 4}, 8)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return matmul(v[0], v[1]); },
                        {random_f64({4, 3}, 9).mT(), random_f64({8, 5}, 10).slice(0, 0, 8, 2)}));
}

TEST(Gradcheck, Einsum) {
  const std::vector<std::tuple<std::string, Shape, Shape>> cases{
      {"abc,cd->abd", {2, 3, 4}, {4, 2}},         {"abc,cde->abde", {2, 2, 3}, {3, 2, 2}},
      {"abcd,cde->abe", {2, 2, 3, 2}, {3, 2, 2}}, {"bij,bjk->bik", {2, 2, 3}, {2, 3, 2}},
      {"abc,cd->ad", {2, 3, 2}, {2, 3}},          {"i,j->ij", {3}, {2}},
      {"hbi,ibj->bhj", {2, 2, 3}, {3, 2, 2}},
  };
  for (auto& [eq, sa, sb] : cases)
    EXPECT_TRUE(
        gradcheck([&](const Inputs& v) { return einsum(eq, v[0], v[1]); }, {random_f64(sa, 11), random_f64(sb, 12)}))
        << eq;
}

LR_GRADCHECK_TEST(Gradcheck, ViewOps, OpKind::Reshape, OpKind::Permute, OpKind::Slice, OpKind::Expand,
                  OpKind::Contiguous) {
  Tensor x = random_f64({2, 3, 4}, 21);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> views{
      {"reshape",
       [](const Tensor& t) {
         return reshape(t, {4, 6});
       }},
      {"reshape-copy", [](const Tensor& t) { return t.mT().reshape({-1}); }},
      {"view",
       [](const Tensor& t) {
         return t.view({6, 4});
       }},
      {"permute",
       [](const Tensor& t) {
         return permute(t, {2, 0, 1});
       }},
      {"transpose", [](const Tensor& t) { return t.transpose(0, 2); }},
      {"mT", [](const Tensor& t) { return t.mT(); }},
      {"slice-step", [](const Tensor& t) { return t.slice(2, 1, 4, 2); }},
      {"narrow", [](const Tensor& t) { return t.narrow(1, 1, 2); }},
      {"select", [](const Tensor& t) { return t.select(1, -1); }},
      {"expand",
       [](const Tensor& t) {
         return t.unsqueeze(1).expand({2, 5, 3, 4});
       }},
      {"expand-size1",
       [](const Tensor& t) {
         return t.slice(1, 0, 1).expand({2, 3, 4});
       }},
      {"squeeze", [](const Tensor& t) { return t.slice(0, 1, 2).squeeze(0); }},
      {"flatten", [](const Tensor& t) { return t.flatten(1); }},
      {"contiguous", [](const Tensor& t) { return t.mT().contiguous(); }},
      {"clone", [](const Tensor& t) { return t.clone(); }},
      {"to-f64", [](const Tensor& t) { return t.to(DType::F64); }},
      {"chained",
       [](const Tensor& t) {
         return t.permute({1, 2, 0}).slice(0, 0, 3, 2).reshape({2, 8}).mT();
       }},
  };
  for (auto& [name, op] : views) EXPECT_TRUE(gradcheck([&](const Inputs& v) { return op(v[0]); }, {x})) << name;
  // A strided leaf (a transposed, stepped view of a larger tensor).
  Tensor strided = random_f64({6, 5}, 22).slice(0, 0, 6, 2).mT();
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(v[0], v[0]); }, {strided}));
}

LR_GRADCHECK_TEST(Gradcheck, ConcatSplitChunk, OpKind::Concat) {
  Tensor a = random_f64({2, 3}, 31), b = random_f64({2, 1}, 32), c = random_f64({2, 2}, 33);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return concat({v[0], v[1], v[2]}, 1); }, {a, b, c}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return concat({v[0], v[0].mT().mT()}, 0); }, {a}));
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        auto parts = split(v[0], {1, 2}, 1);
        return mul(parts[0], sum(parts[1], {1}, true));
      },
      {a}));
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        auto parts = chunk(v[0], 2, 1);
        return sub(parts[0], mul(parts[1], 2.0));
      },
      {random_f64({3, 4}, 34)}));
}

LR_GRADCHECK_TEST(Gradcheck, SoftmaxLogSoftmaxEveryAxis, OpKind::Softmax, OpKind::LogSoftmax) {
  Tensor x = random_f64({2, 3, 4}, 41);
  for (int64_t axis : {0, 1, 2, -1}) {
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return softmax(v[0], axis); }, {x})) << axis;
    EXPECT_TRUE(gradcheck([&](const Inputs& v) { return log_softmax(v[0], axis); }, {x})) << axis;
  }
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return softmax(v[0].mT(), -1); }, {random_f64({4, 3}, 42)}));
}

LR_GRADCHECK_TEST(Gradcheck, CrossEntropy, OpKind::CrossEntropy) {
  Tensor labels = Tensor::from_vector(std::vector<int64_t>{2, -100, 0, 4, 1, 3}, {2, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& v) { return cross_entropy(v[0], labels); }, {random_f64({2, 3, 5}, 51)}));
  Tensor l1 = Tensor::from_vector(std::vector<int64_t>{1, 0, 3}, {3});
  EXPECT_TRUE(gradcheck([&](const Inputs& v) { return cross_entropy(v[0].mT(), l1); }, {random_f64({4, 3}, 52)}));
}

LR_GRADCHECK_TEST(Gradcheck, LayerNorm, OpKind::LayerNorm) {
  Tensor x = random_f64({3, 2, 5}, 61), w = random_f64({5}, 62), b = random_f64({5}, 63);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], Tensor(), Tensor()); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], Tensor()); }, {x, w}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0].mT(), v[1], v[2], 1e-3); },
                        {random_f64({4, 3}, 64), random_f64({4}, 65), random_f64({4}, 66)}));
}

LR_GRADCHECK_TEST(Gradcheck, EmbeddingAndDropout, OpKind::Embedding) {
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 3, 1, 2, 3}, {2, 3});
  EXPECT_TRUE(gradcheck([&](const Inputs& v) { return embedding(v[0], ids); }, {random_f64({4, 3}, 71)}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return dropout(v[0], 0.4, true, 99, 5); }, {random_f64({5, 7}, 72)}));
}

// f32 <-> f64 casts pass the gradient through; the round trip through f32 rounds the input to
// ~6e-8 relative, so the central difference takes a wide step (exact: the function is linear).
LR_GRADCHECK_TEST(Gradcheck, CastRoundTrip, OpKind::Cast) {
  test::GradcheckOptions wide;
  wide.eps = 0.1;
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return mul(v[0].to(DType::F32), 2.0).to(DType::F64); },
                        {random_f64({3, 4}, 73)}, wide));
}

TEST(Gradcheck, CompositeGraphWithReuse) {
  // A two-layer MLP with a shared input: exercises accumulation of several paths.
  Tensor x = random_f64({3, 4}, 81), w1 = random_f64({4, 5}, 82), b1 = random_f64({5}, 83), w2 = random_f64({5, 2}, 84);
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        Tensor h = tanh(add(matmul(v[0], v[1]), v[2]));
        return add(matmul(h, v[3]), mean(v[0], {1}, true));
      },
      {x, w1, b1, w2}));
}

TEST(Gradcheck, HelperCatchesAWrongGradient) {
  // detach() drops a path: the analytic gradient misses half of d(x*x)/dx = 2x, which the
  // helper must report. This test guards the helper itself.
  auto result = gradcheck([](const Inputs& v) { return mul(v[0], v[0].detach()); }, {random_f64({3}, 91)});
  EXPECT_FALSE(result);
  EXPECT_NE(std::string(result.message()).find("differ"), std::string::npos) << result.message();
}
