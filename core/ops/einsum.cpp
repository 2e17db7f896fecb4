// einsum for two operands, lowered to sum + permute + reshape + one batched matmul, so its
// backward comes from those ops and every backend runs it.
#include <algorithm>
#include <array>
#include <cctype>

#include "core/ops/einsum_equation.h"
#include "core/ops/op_util.h"

namespace lowrank {

EinsumEquation parse_einsum_equation(const std::string& eq) {
  std::string s;
  for (char c : eq)
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  LR_CHECK(s.find("...") == std::string::npos,
           "einsum: ellipsis '...' is not supported in equation \"{}\"; name every axis", eq);
  const size_t arrow = s.find("->");
  LR_CHECK(arrow == std::string::npos || s.find("->", arrow + 2) == std::string::npos,
           "einsum: more than one '->' in equation \"{}\"", eq);
  const std::string lhs = s.substr(0, arrow);
  std::vector<std::string> ops{""};
  for (char c : lhs) {
    if (c == ',')
      ops.emplace_back();
    else
      ops.back() += c;
  }
  LR_CHECK(ops.size() == 2, "einsum: equation \"{}\" names {} operand(s), but einsum takes exactly 2", eq, ops.size());
  EinsumEquation e{{ops[0], ops[1]}, ""};
  auto check_letters = [&](const std::string& part, const char* what) {
    for (char c : part)
      LR_CHECK(std::isalpha(static_cast<unsigned char>(c)),
               "einsum: invalid character '{}' in the {} of equation \"{}\" (indices are letters a-z, A-Z)", c, what,
               eq);
    for (size_t i = 0; i < part.size(); ++i)
      LR_CHECK(
          part.find(part[i], i + 1) == std::string::npos,
          "einsum: index '{}' repeats in the {} \"{}\" of equation \"{}\" (traces and diagonals are not supported)",
          part[i], what, part, eq);
  };
  check_letters(e.in[0], "first operand");
  check_letters(e.in[1], "second operand");
  if (arrow != std::string::npos) {
    e.out = s.substr(arrow + 2);
    check_letters(e.out, "output");
    for (char c : e.out)
      LR_CHECK(e.in[0].find(c) != std::string::npos || e.in[1].find(c) != std::string::npos,
               "einsum: output index '{}' appears in no operand of equation \"{}\"", c, eq);
  } else {
    // Implicit output (NumPy): the indices that appear once, in alphabetical order.
    for (char c : e.in[0] + e.in[1])
      if (std::count(e.in[0].begin(), e.in[0].end(), c) + std::count(e.in[1].begin(), e.in[1].end(), c) == 1)
        e.out += c;
    std::sort(e.out.begin(), e.out.end());
  }
  return e;
}

namespace {

bool has(const std::string& s, char c) {
  return s.find(c) != std::string::npos;
}

int pos(const std::string& s, char c) {
  return static_cast<int>(s.find(c));
}

// Sums `t` over the indices of `idx` that appear neither in `other` nor in `out`.
Tensor sum_private(const Tensor& t, std::string& idx, const std::string& other, const std::string& out) {
  std::vector<int64_t> axes;
  std::string kept;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (!has(other, idx[i]) && !has(out, idx[i]))
      axes.push_back(static_cast<int64_t>(i));
    else
      kept += idx[i];
  }
  if (axes.empty()) return t;
  idx = kept;
  return sum(t, axes);
}

}  // namespace

Tensor einsum(const std::string& equation, const Tensor& a_in, const Tensor& b_in) {
  detail::check_same("einsum", a_in, b_in);
  detail::check_float("einsum", a_in);
  EinsumEquation e = parse_einsum_equation(equation);
  const std::array<const Tensor*, 2> t{&a_in, &b_in};
  for (int k = 0; k < 2; ++k)
    LR_CHECK(static_cast<int64_t>(e.in[k].size()) == t[k]->dim(),
             "einsum: operand {} has {} indices (\"{}\") but its shape {} has rank {} in equation \"{}\"", k,
             e.in[k].size(), e.in[k], t[k]->shape(), t[k]->dim(), equation);
  auto size_of = [&](char c) {
    return has(e.in[0], c) ? a_in.shape()[pos(e.in[0], c)] : b_in.shape()[pos(e.in[1], c)];
  };
  for (char c : e.in[0])
    if (has(e.in[1], c))
      LR_CHECK(a_in.shape()[pos(e.in[0], c)] == b_in.shape()[pos(e.in[1], c)],
               "einsum: index '{}' has size {} in operand 0 {} but {} in operand 1 {} in equation \"{}\"", c,
               a_in.shape()[pos(e.in[0], c)], a_in.shape(), b_in.shape()[pos(e.in[1], c)], b_in.shape(), equation);

  // Indices in one operand only and not in the output are summed out first.
  std::string ia = e.in[0], ib = e.in[1];
  Tensor a = sum_private(a_in, ia, ib, e.out);
  Tensor b = sum_private(b_in, ib, ia, e.out);

  // batch: both operands and the output; m: a and output; n: b and output; k: contracted.
  std::string batch, m, n, k;
  for (char c : e.out) {
    if (has(ia, c) && has(ib, c))
      batch += c;
    else if (has(ia, c))
      m += c;
    else
      n += c;
  }
  for (char c : ia)
    if (has(ib, c) && !has(e.out, c)) k += c;

  auto prod = [&](const std::string& s) {
    int64_t p = 1;
    for (char c : s) p *= size_of(c);
    return p;
  };
  auto perm_for = [](const std::string& idx, const std::string& order) {
    std::vector<int> p;
    for (char c : order) p.push_back(pos(idx, c));
    return p;
  };
  const int64_t nb = prod(batch), nm = prod(m), nn = prod(n), nk = prod(k);
  Tensor am = a.permute(perm_for(ia, batch + m + k)).reshape({nb, nm, nk});
  Tensor bm = b.permute(perm_for(ib, batch + k + n)).reshape({nb, nk, nn});
  Tensor c = nb == 1 ? matmul(am.squeeze(0), bm.squeeze(0)) : matmul(am, bm);

  const std::string got = batch + m + n;
  Shape got_shape;
  for (char ch : got) got_shape.push_back(size_of(ch));
  c = c.reshape(got_shape);
  if (got == e.out) return c;
  return c.permute(perm_for(got, e.out));
}

}  // namespace lowrank
