// The ΔW-vs-W report for one LoRA layer: does the update ΔW = scale·B·A line up with W's own top
// singular directions, how close does it come to (1 − base_scale)·W, and how strongly does it
// amplify directions W hardly uses (the LoRA paper, section 7.3).
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

}  // namespace lowrank::analysis
