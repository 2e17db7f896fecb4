// delta_report(): two SVDs (W and ΔW) in f64 on the CPU, then φ, errors and amplification.
#include "analysis/delta_report.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "analysis/similarity.h"
#include "analysis/svd.h"
#include "core/ops.h"

namespace lowrank::analysis {
namespace {

double frobenius(const Tensor& t) {
  return std::sqrt(sum(mul(t, t)).item());
}

Tensor to_cpu_f64(const Tensor& t) {
  return t.detach().to(Device::cpu()).to(DType::F64);
}

bool is_float(const Tensor& t) {
  return t.dtype() == DType::F32 || t.dtype() == DType::F64;
}

std::vector<double> grid_diagonal(const SimilarityGrid& g) {
  std::vector<double> d;
  for (int64_t k = 1; k <= std::min(g.rows, g.cols); ++k) d.push_back(g.at(k, k));
  return d;
}

// NaN and Inf have no JSON spelling; null says "undefined" to every reader.
nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

void to_json(nlohmann::json& j, const DeltaReport& r) {
  j = nlohmann::json{{"out", r.out},
                     {"in", r.in},
                     {"rank", r.rank},
                     {"scale", r.scale},
                     {"base_scale", r.base_scale},
                     {"phi_left", r.phi_left},
                     {"phi_right", r.phi_right},
                     {"delta_norm", number_or_null(r.delta_norm)},
                     {"w_norm", number_or_null(r.w_norm)},
                     {"target_norm", number_or_null(r.target_norm)},
                     {"relative_error", number_or_null(r.relative_error)},
                     {"eckart_young_error", number_or_null(r.eckart_young_error)},
                     {"projected_w_norm", number_or_null(r.projected_w_norm)},
                     {"amplification", number_or_null(r.amplification)},
                     {"delta_singular_values", r.delta_singular_values},
                     {"w_singular_values", r.w_singular_values}};
}

DeltaReport delta_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale, double base_scale) {
  LR_CHECK(w.defined() && a.defined() && b.defined(), "delta_report: undefined W, A or B");
  LR_CHECK(w.dim() == 2 && a.dim() == 2 && b.dim() == 2, "delta_report: W, A and B must be 2-D, got W {} A {} B {}",
           w.shape(), a.shape(), b.shape());
  LR_CHECK(is_float(w) && is_float(a) && is_float(b), "delta_report: needs f32/f64 tensors, got W {} A {} B {}",
           dtype_name(w.dtype()), dtype_name(a.dtype()), dtype_name(b.dtype()));
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
  LR_CHECK(a.size(1) == in && b.size(0) == out && b.size(1) == r,
           "delta_report: A {} and B {} do not fit W {} (need A [r, {}] and B [{}, r])", a.shape(), b.shape(),
           w.shape(), in, out);
  LR_CHECK(r >= 1 && r <= std::min(out, in), "delta_report: rank {} outside 1..min({}, {}) for W {}", r, out, in,
           w.shape());
  LR_CHECK(std::isfinite(scale) && std::isfinite(base_scale), "delta_report: scale {} and base_scale {} must be finite",
           scale, base_scale);

  NoGradGuard no_grad;
  const Tensor w64 = to_cpu_f64(w);
  const Tensor dw = mul(matmul(to_cpu_f64(b), to_cpu_f64(a)), scale);
  const Svd sw = svd(w64), sd = svd(dw);

  DeltaReport rep;
  rep.out = out, rep.in = in, rep.rank = r, rep.scale = scale, rep.base_scale = base_scale;
  rep.phi_left = grid_diagonal(subspace_similarity_grid(sd.u, sw.u, r, r));
  rep.phi_right = grid_diagonal(subspace_similarity_grid(sd.vt.mT(), sw.vt.mT(), r, r));

  rep.w_singular_values = sw.s.to_vector<double>();
  rep.delta_singular_values = sd.s.narrow(0, 0, r).to_vector<double>();
  double total = 0, tail = 0;
  for (size_t i = 0; i < rep.w_singular_values.size(); ++i) {
    const double s2 = rep.w_singular_values[i] * rep.w_singular_values[i];
    total += s2;
    if (static_cast<int64_t>(i) >= r) tail += s2;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  rep.w_norm = std::sqrt(total);
  rep.eckart_young_error = total > 0 ? std::sqrt(tail / total) : nan;

  rep.delta_norm = frobenius(dw);
  const Tensor target = mul(w64, 1.0 - base_scale);
  rep.target_norm = frobenius(target);
  rep.relative_error = rep.target_norm > 0 ? frobenius(sub(dw, target)) / rep.target_norm : nan;

  // Uᵀ W Vᵀ with U = ΔW's top-r left vectors [out, r] and Vᵀ its top-r right vectors [r, in].
  const Tensor projected = matmul(matmul(sd.u.narrow(1, 0, r).mT(), w64), sd.vt.narrow(0, 0, r).mT());
  rep.projected_w_norm = frobenius(projected);
  rep.amplification = rep.projected_w_norm > 0 ? rep.delta_norm / rep.projected_w_norm
                      : rep.delta_norm > 0     ? std::numeric_limits<double>::infinity()
                                               : nan;
  return rep;
}

}  // namespace lowrank::analysis
