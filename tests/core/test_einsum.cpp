// einsum against a plain sum over every index assignment: Keras EinsumDense equations, batch
// indices, several contracted indices, indices summed in one operand, outer products, views;
// and every kind of invalid equation.
#include <gtest/gtest.h>

#include <map>

#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::throws_with;

namespace {

// out[o] = sum over all other indices of a[..] * b[..], by brute force over every assignment.
std::vector<double> brute_einsum(const std::string& eq, const Tensor& a, const Tensor& b) {
  const size_t comma = eq.find(','), arrow = eq.find("->");
  const std::string ia = eq.substr(0, comma), ib = eq.substr(comma + 1, arrow - comma - 1), io = eq.substr(arrow + 2);
  std::map<char, int64_t> size;
  for (size_t i = 0; i < ia.size(); ++i) size[ia[i]] = a.shape()[i];
  for (size_t i = 0; i < ib.size(); ++i) size[ib[i]] = b.shape()[i];
  std::string all;
  for (auto& [c, n] : size) all += c;
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  int64_t out_n = 1;
  for (char c : io) out_n *= size[c];
  std::vector<double> out(static_cast<size_t>(out_n), 0.0);
  std::map<char, int64_t> at;
  for (char c : all) at[c] = 0;
  auto flat = [&](const std::string& idx) {
    int64_t f = 0;
    for (char c : idx) f = f * size[c] + at[c];
    return f;
  };
  while (true) {
    out[flat(io)] += av[flat(ia)] * bv[flat(ib)];
    size_t d = all.size();
    while (d > 0 && ++at[all[d - 1]] == size[all[d - 1]]) at[all[--d]] = 0;
    if (d == 0) break;
  }
  return out;
}

struct EinsumCase {
  std::string eq;
  Shape a, b, out;
};

class EinsumEq : public ::testing::TestWithParam<EinsumCase> {};

// Sums of up to ~100 f64 products: only rounding differs from the brute-force order.
constexpr double kEinsumTol = 1e-12;

}  // namespace

TEST_P(EinsumEq, MatchesBruteForce) {
  const EinsumCase& c = GetParam();
  Tensor a = randn(c.a, 1, 0, DType::F64), b = randn(c.b, 2, 0, DType::F64);
  Tensor y = einsum(c.eq, a, b);
  EXPECT_EQ(y.shape(), c.out);
  EXPECT_TRUE(all_close(y, brute_einsum(c.eq, a, b), kEinsumTol));
}

INSTANTIATE_TEST_SUITE_P(
    Equations, EinsumEq,
    ::testing::Values(EinsumCase{"abc,cd->abd", {2, 3, 4}, {4, 5}, {2, 3, 5}},          // EinsumDense
                      EinsumCase{"abc,cde->abde", {2, 3, 4}, {4, 2, 3}, {2, 3, 2, 3}},  // EinsumDense
                      EinsumCase{"abcd,cde->abe", {2, 3, 4, 2}, {4, 2, 5}, {2, 3, 5}},  // EinsumDense
                      EinsumCase{"ab,bc->ac", {3, 4}, {4, 5}, {3, 5}},
                      EinsumCase{"bij,bjk->bik", {3, 2, 4}, {3, 4, 5}, {3, 2, 5}},      // batch
                      EinsumCase{"ij,kj->ik", {3, 4}, {5, 4}, {3, 5}},                  // b transposed
                      EinsumCase{"bij,bkj->bki", {2, 3, 4}, {2, 5, 4}, {2, 5, 3}},      // permuted output
                      EinsumCase{"abcd,cdbe->ae", {2, 3, 4, 2}, {4, 2, 3, 3}, {2, 3}},  // three contracted
                      EinsumCase{"abc,cd->ad", {2, 3, 4}, {4, 5}, {2, 5}},              // b summed in a only
                      EinsumCase{"ab,cd->ac", {2, 3}, {4, 5}, {2, 4}},                  // summed in each
                      EinsumCase{"i,j->ij", {3}, {4}, {3, 4}},                          // outer product
                      EinsumCase{"bi,bj->bij", {2, 3}, {2, 4}, {2, 3, 4}},              // batched outer
                      EinsumCase{"i,i->", {5}, {5}, {}},                                // dot product
                      EinsumCase{"hbi,ibj->bhj", {2, 3, 4}, {4, 3, 2}, {3, 2, 2}},      // batch in the middle
                      EinsumCase{"abc,->cab", {2, 3, 4}, {}, {4, 2, 3}}),               // scalar operand
    [](const ::testing::TestParamInfo<EinsumCase>& i) { return "case" + std::to_string(i.index); });

TEST(Einsum, ImplicitOutputAndSpaces) {
  Tensor a = randn({3, 4}, 3, 0, DType::F64), b = randn({4, 2}, 4, 0, DType::F64);
  EXPECT_TRUE(all_close(einsum("ij,jk", a, b), brute_einsum("ij,jk->ik", a, b), kEinsumTol));
  EXPECT_TRUE(all_close(einsum(" ij , jk -> ik ", a, b), brute_einsum("ij,jk->ik", a, b), kEinsumTol));
  // Implicit output is alphabetical: "kj,ji" gives "ik", not "ki".
  EXPECT_EQ(einsum("kj,ji", b.mT(), a.mT()).shape(), (Shape{3, 2}));
}

TEST(Einsum, ViewOperandsAndF32) {
  Tensor a = randn({4, 3, 2}, 5, 0, DType::F64).permute({2, 1, 0});  // [2, 3, 4] non-contiguous
  Tensor b = randn({8, 5}, 6, 0, DType::F64).slice(0, 0, 8, 2);      // [4, 5] stepped
  EXPECT_TRUE(all_close(einsum("abc,cd->abd", a, b), brute_einsum("abc,cd->abd", a, b), kEinsumTol));
  // f32: sums of 4 products of unit normals round to ~1e-6.
  Tensor af = a.to(DType::F32), bf = b.to(DType::F32);
  EXPECT_TRUE(all_close(einsum("abc,cd->abd", af, bf), brute_einsum("abc,cd->abd", a, b), 1e-5));
  EXPECT_EQ(einsum("abc,cd->abd", af, bf).dtype(), DType::F32);
}

TEST(Einsum, InvalidEquationsNameTheProblemAndTheEquation) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 4});
  EXPECT_TRUE(throws_with([&] { einsum("ij->ij", a, b); }, {"einsum", "\"ij->ij\"", "1 operand", "exactly 2"}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,jk,kl->il", a, b); }, {"einsum", "3 operand", "exactly 2"}));
  EXPECT_TRUE(
      throws_with([&] { einsum("ijk,jk->ik", a, b); }, {"einsum", "operand 0", "3 indices", "[2, 3]", "rank 2"}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,jk->iz", a, b); }, {"einsum", "output index 'z'", "\"ij,jk->iz\""}));
  EXPECT_TRUE(throws_with(
      [&] {
        einsum("ii,jk->ik", Tensor::zeros({3, 3}), b);
      },
      {"einsum", "'i' repeats", "\"ii,jk->ik\""}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,jk->ii", a, b); }, {"einsum", "'i' repeats", "output"}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,ik->jk", a, b); }, {"einsum", "index 'i'", "size 2", "3", "\"ij,ik->jk\""}));
  EXPECT_TRUE(throws_with([&] { einsum("i1,jk->ik", a, b); }, {"einsum", "invalid character '1'", "\"i1,jk->ik\""}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,jk->i-k", a, b); }, {"einsum", "invalid character '-'"}));
  EXPECT_TRUE(throws_with([&] { einsum("...j,jk->...k", a, b); }, {"einsum", "ellipsis", "not supported"}));
  EXPECT_TRUE(throws_with([&] { einsum("ij,jk->ik->i", a, b); }, {"einsum", "more than one '->'"}));
  EXPECT_TRUE(throws_with(
      [&] {
        einsum("ij,jk->ik", a, Tensor::zeros({3, 4}, DType::F64));
      },
      {"einsum", "dtype mismatch", "f32", "f64"}));
}
