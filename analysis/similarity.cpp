// Subspace similarity: single entries, the full grid through prefix sums, adapter bases.
#include "analysis/similarity.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "analysis/svd.h"
#include "core/ops.h"

namespace lowrank::analysis {
namespace {

void check_bases(const char* op, const Tensor& u1, const Tensor& u2) {
  LR_CHECK(u1.defined() && u2.defined(), "{}: undefined basis", op);
  LR_CHECK(u1.dim() == 2 && u2.dim() == 2, "{}: bases must be 2-D [d, r], got {} and {}", op, u1.shape(), u2.shape());
  LR_CHECK(u1.dtype() == u2.dtype() && (u1.dtype() == DType::F32 || u1.dtype() == DType::F64),
           "{}: bases must share an f32/f64 dtype, got {} {} and {} {}", op, dtype_name(u1.dtype()), u1.shape(),
           dtype_name(u2.dtype()), u2.shape());
  LR_CHECK(u1.device() == u2.device(), "{}: bases on different devices, {} on {} and {} on {}", op, u1.shape(),
           u1.device().str(), u2.shape(), u2.device().str());
  LR_CHECK(u1.size(0) == u2.size(0), "{}: bases {} and {} span spaces of different dimension ({} vs {})", op,
           u1.shape(), u2.shape(), u1.size(0), u2.size(0));
  LR_CHECK(u1.size(1) > 0 && u2.size(1) > 0, "{}: empty basis, {} and {}", op, u1.shape(), u2.shape());
}

}  // namespace

double SimilarityGrid::at(int64_t i, int64_t j) const {
  LR_CHECK(i >= 1 && i <= rows && j >= 1 && j <= cols, "SimilarityGrid::at: ({}, {}) outside 1..{} x 1..{}", i, j, rows,
           cols);
  return values[static_cast<size_t>((i - 1) * cols + (j - 1))];
}

void to_json(nlohmann::json& j, const SimilarityGrid& g) {
  nlohmann::json phi = nlohmann::json::array();
  for (int64_t i = 0; i < g.rows; ++i)
    phi.push_back(std::vector<double>(g.values.begin() + i * g.cols, g.values.begin() + (i + 1) * g.cols));
  j = nlohmann::json{{"rows", g.rows}, {"cols", g.cols}, {"phi", std::move(phi)}};
}

double subspace_similarity(const Tensor& u1, const Tensor& u2, int64_t i, int64_t j) {
  check_bases("subspace_similarity", u1, u2);
  LR_CHECK(i >= 1 && i <= u1.size(1) && j >= 1 && j <= u2.size(1),
           "subspace_similarity: (i, j) = ({}, {}) outside 1..{} x 1..{} for bases {} and {}", i, j, u1.size(1),
           u2.size(1), u1.shape(), u2.shape());
  NoGradGuard no_grad;
  Tensor m = matmul(u1.detach().narrow(1, 0, i).mT(), u2.detach().narrow(1, 0, j));
  return sum(mul(m, m)).item() / static_cast<double>(std::min(i, j));
}

SimilarityGrid subspace_similarity_grid(const Tensor& u1, const Tensor& u2, int64_t r1, int64_t r2) {
  check_bases("subspace_similarity_grid", u1, u2);
  if (r1 < 0) r1 = u1.size(1);
  if (r2 < 0) r2 = u2.size(1);
  LR_CHECK(r1 >= 1 && r1 <= u1.size(1) && r2 >= 1 && r2 <= u2.size(1),
           "subspace_similarity_grid: ranks ({}, {}) outside 1..{} x 1..{} for bases {} and {}", r1, r2, u1.size(1),
           u2.size(1), u1.shape(), u2.shape());
  NoGradGuard no_grad;
  // ‖U1[:, :i]ᵀ U2[:, :j]‖² is the sum of the squared entries of the top-left i x j block of the
  // one product G = U1ᵀ U2, so a 2-D prefix sum of G² (in f64) gives every entry.
  const std::vector<double> g =
      matmul(u1.detach().narrow(1, 0, r1).mT(), u2.detach().narrow(1, 0, r2)).to_vector<double>();
  SimilarityGrid out{r1, r2, std::vector<double>(static_cast<size_t>(r1 * r2))};
  std::vector<double> col_prefix(static_cast<size_t>(r2), 0.0);  // running sums down each column
  for (int64_t i = 0; i < r1; ++i) {
    double row_acc = 0.0;
    for (int64_t j = 0; j < r2; ++j) {
      const double v = g[static_cast<size_t>(i * r2 + j)];
      col_prefix[static_cast<size_t>(j)] += v * v;
      row_acc += col_prefix[static_cast<size_t>(j)];
      out.values[static_cast<size_t>(i * r2 + j)] = row_acc / static_cast<double>(std::min(i, j) + 1);
    }
  }
  return out;
}

SimilarityGrid phi_chance_grid(int64_t rows, int64_t cols, int64_t n) {
  LR_CHECK(rows >= 1 && cols >= 1 && n >= std::max(rows, cols),
           "phi_chance_grid: a {} x {} grid needs bases of at most n = {} vectors", rows, cols, n);
  SimilarityGrid out{rows, cols, std::vector<double>(static_cast<size_t>(rows * cols))};
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      out.values[static_cast<size_t>(i * cols + j)] = static_cast<double>(std::max(i, j) + 1) / static_cast<double>(n);
  return out;
}

Tensor singular_basis(const Tensor& m, AdapterSide side) {
  Svd d = svd(m);
  return side == AdapterSide::RightOfA ? d.vt.mT() : d.u;
}

SimilarityGrid adapter_similarity(const Tensor& m1, const Tensor& m2, AdapterSide side) {
  LR_CHECK(m1.defined() && m2.defined() && m1.dim() == 2 && m2.dim() == 2,
           "adapter_similarity: needs two 2-D matrices, got {} and {}", m1.defined() ? m1.shape() : Shape{},
           m2.defined() ? m2.shape() : Shape{});
  const int axis = side == AdapterSide::RightOfA ? 1 : 0;
  LR_CHECK(m1.size(axis) == m2.size(axis),
           "adapter_similarity: {} {} and {} differ in their shared dimension ({} vs {})",
           side == AdapterSide::RightOfA ? "A matrices" : "B matrices", m1.shape(), m2.shape(), m1.size(axis),
           m2.size(axis));
  // A zero matrix has no singular directions: SVD still returns a basis, but an arbitrary one, and
  // φ computed from it would look like a result (an adapter whose lora_A never left zero).
  auto basis = [&](const Tensor& m, const char* which) {
    Svd d = svd(m);
    LR_CHECK(max(d.s).item() > 0.0,
             "adapter_similarity: the {} matrix {} is all zeros; its singular vectors, and so phi, are undefined",
             which, m.shape());
    return side == AdapterSide::RightOfA ? d.vt.mT() : d.u;
  };
  return subspace_similarity_grid(basis(m1, "first"), basis(m2, "second"));
}

}  // namespace lowrank::analysis
