// Normalized subspace similarity of the LoRA paper (section 7.2):
//   φ(U1, U2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j)  ∈ [0, 1],
// where the columns of U1 [d, r1] and U2 [d, r2] are orthonormal bases ordered by importance.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"

namespace lowrank::analysis {

// φ(i, j) for 1 ≤ i ≤ rows, 1 ≤ j ≤ cols, row-major.
struct SimilarityGrid {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;
  double at(int64_t i, int64_t j) const;  // 1-based, as in the paper
};
// {"rows": r1, "cols": r2, "phi": [[φ(1,1), φ(1,2), ...], ...]}
void to_json(nlohmann::json& j, const SimilarityGrid& g);

// One entry. u1 [d, r1], u2 [d, r2]: same d, dtype and device; 1 ≤ i ≤ r1, 1 ≤ j ≤ r2.
double subspace_similarity(const Tensor& u1, const Tensor& u2, int64_t i, int64_t j);
// The whole grid for the first r1 columns of u1 and r2 of u2 (-1: all of them), from one
// matmul of the bases and 2-D prefix sums of its squares.
SimilarityGrid subspace_similarity_grid(const Tensor& u1, const Tensor& u2, int64_t r1 = -1, int64_t r2 = -1);

// φ's chance level: the expected φ(i, j) of two independent uniformly random subspaces of R^n,
// max(i, j) / n, for every cell of a rows x cols grid (a heatmap's reference contour).
SimilarityGrid phi_chance_grid(int64_t rows, int64_t cols, int64_t n);

// Which singular vectors stand for an adapter: the right ones of A [r, in] (the paper's choice),
// or the left ones of B [out, r].
enum class AdapterSide { RightOfA, LeftOfB };

// The orthonormal basis of a matrix's row space (RightOfA: Vtᵀ [n, k]) or column space
// (LeftOfB: U [m, k]), ordered by singular value; k = min(m, n).
Tensor singular_basis(const Tensor& m, AdapterSide side);
// φ grid between two adapter matrices (both A's, or both B's), each reduced to its basis.
// Both take tensors on any device: the SVD runs where they live (cuSOLVER on CUDA) and only the
// grid comes back to the CPU. Pass f64 for φ to 1e-6 (f32 SVDs agree to about 1e-5).
SimilarityGrid adapter_similarity(const Tensor& m1, const Tensor& m2, AdapterSide side = AdapterSide::RightOfA);

}  // namespace lowrank::analysis
