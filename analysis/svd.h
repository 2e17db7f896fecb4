// Thin singular value decomposition for the analyses (the op itself lives in core, which nn's
// PiSSA initialisation also needs), and a sign convention that makes two decompositions
// comparable entry by entry.
#pragma once
#include "core/ops.h"

namespace lowrank::analysis {

// a = u · diag(s) · vt with k = min(m, n): u [m, k] and vt [k, n] with orthonormal columns/rows,
// s [k] descending and non-negative; same dtype and device as `a`, contiguous, no autograd.
using Svd = SvdResult;
// `a`: a 2-D, non-empty f32/f64 tensor of finite values (any layout); anything else throws.
using lowrank::svd;

// Singular vectors are unique only up to sign: flips each pair (u[:, i], vt[i, :]) so that the
// entry of largest magnitude in u[:, i] is positive (the first such entry on a tie). The product
// u · diag(s) · vt is unchanged.
Svd canonicalize_signs(const Svd& d);

// The best rank-r approximation of a matrix (Eckart–Young): its top r singular triplets.
// a [r, n] = vt[:r], b [m, r] = u[:, :r]·diag(s[:r]), so b·a is the rank-r reconstruction; as an
// adapter with scale 1 and base_scale 0 it stands for the experiment's svd variant. Same dtype and
// device as `m` (on CUDA the SVD runs through cuSOLVER). 1 ≤ r ≤ min(rows, cols).
struct TruncatedSvd {
  Tensor a, b;
  Tensor reconstruction() const;  // b · a [m, n]
};
TruncatedSvd truncated_svd(const Tensor& m, int64_t r);

}  // namespace lowrank::analysis
