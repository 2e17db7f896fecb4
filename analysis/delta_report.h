// The ΔW-vs-W report for one LoRA layer: does the update ΔW = scale·B·A line up with W's own top
// singular directions, how close does it come to (1 − base_scale)·W, and how strongly does it
// amplify directions W hardly uses (the LoRA paper, section 7.3); and that paper's Table 7, the
// same amplification against W's own and random directions (AmplificationReport).
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"

namespace lowrank::analysis {

struct DeltaReport {
  int64_t out = 0, in = 0, rank = 0;
  double scale = 1.0, base_scale = 1.0;
  // φ(U_ΔW, U_W, k, k) for k = 1..rank (entry k − 1): left = column spaces (U), right = row
  // spaces (V). Past ΔW's numerical rank, or across tied singular values, its vectors are
  // arbitrary and so are these entries.
  std::vector<double> phi_left, phi_right;
  double delta_norm = 0;      // ‖ΔW‖_F
  double w_norm = 0;          // ‖W‖_F
  double target_norm = 0;     // ‖(1 − base_scale)·W‖_F
  double relative_error = 0;  // ‖ΔW − (1 − base_scale)·W‖_F / target_norm; NaN (JSON null) when the target is 0
  double eckart_young_error = 0;  // sqrt(Σ_{i>rank} σ_i(W)²) / ‖W‖_F: the least relative_error any rank-r ΔW reaches
  double projected_w_norm = 0;  // ‖Uᵀ W Vᵀ‖_F, U [out, r] and Vᵀ [r, in] the top-r singular vectors of ΔW
  double amplification = 0;     // delta_norm / projected_w_norm
  std::vector<double> delta_singular_values;  // the top `rank` singular values of ΔW
  std::vector<double> w_singular_values;      // all of W's, descending
};
void to_json(nlohmann::json& j, const DeltaReport& r);

// w [out, in], a [r, in], b [out, r] with 1 ≤ r ≤ min(out, in); any float dtype and device. The
// report is computed on the CPU in f64: φ close to 1 and small errors need more than f32's digits.
DeltaReport delta_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale, double base_scale);

// The LoRA paper's Table 7 (section 7.3) for one adapter: how much of W lies along three sets of
// r directions, U [out, r] and V [in, r] with orthonormal columns, measured as ‖Uᵀ W V‖_F:
//   delta:  the top-r left/right singular vectors of ΔW = scale·B·A (what the adapter amplifies),
//   w:      W's own top-r singular vectors (an upper bound, ‖W‖'s top-r energy),
//   random: a random pair, Gaussian matrices orthonormalised (a baseline: for random directions
//           E‖Uᵀ W V‖²_F = r²/(out·in)·‖W‖²_F).
// and for each the amplification factor ‖ΔW‖_F / ‖Uᵀ W V‖_F (the paper's 21.5 for r = 4 on
// GPT-3's W_q is the `delta` one). Computed in f64 on the CPU like delta_report.
struct AmplificationReport {
  int64_t out = 0, in = 0, rank = 0;
  double scale = 1.0;
  uint64_t seed = 0;      // of the random pair (0 and unused when the caller passed one)
  double w_norm = 0;      // ‖W‖_F
  double delta_norm = 0;  // ‖ΔW‖_F
  struct Directions {
    double projected_w_norm = 0;  // ‖Uᵀ W V‖_F
    double amplification = 0;     // delta_norm / projected_w_norm (Inf when that is 0 and ΔW is not)
  };
  Directions delta, w, random;
};
// {"out", "in", "rank", "scale", "seed", "w_norm", "delta_norm",
//  "delta": {"projected_w_norm", "amplification"}, "w": {...}, "random": {...}}; non-finite -> null.
void to_json(nlohmann::json& j, const AmplificationReport& r);

// w [out, in], a [r, in], b [out, r] with 1 ≤ r ≤ min(out, in); any float dtype and device. The
// random pair is drawn from `seed` (Philox normals, U from offset 0 and V after it, each
// orthonormalised), so a report repeats exactly.
AmplificationReport amplification_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale,
                                         uint64_t seed);
// The same with the random directions given: random_u [out, r] and random_v [in, r], any full-rank
// matrices (only their column spans matter: they are orthonormalised here).
AmplificationReport amplification_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale,
                                         const Tensor& random_u, const Tensor& random_v);

}  // namespace lowrank::analysis
