// delta_report(): two SVDs (W and ΔW) in f64 on the CPU, then φ, errors and amplification;
// amplification_report(): the same projection against W's own and random directions (Table 7).
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

// W [out, in], A [r, in], B [out, r] of float dtypes with 1 ≤ r ≤ min(out, in).
void check_adapter(const char* op, const Tensor& w, const Tensor& a, const Tensor& b) {
  LR_CHECK(w.defined() && a.defined() && b.defined(), "{}: undefined W, A or B", op);
  LR_CHECK(w.dim() == 2 && a.dim() == 2 && b.dim() == 2, "{}: W, A and B must be 2-D, got W {} A {} B {}", op,
           w.shape(), a.shape(), b.shape());
  LR_CHECK(is_float(w) && is_float(a) && is_float(b), "{}: needs f32/f64 tensors, got W {} A {} B {}", op,
           dtype_name(w.dtype()), dtype_name(a.dtype()), dtype_name(b.dtype()));
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
  LR_CHECK(a.size(1) == in && b.size(0) == out && b.size(1) == r,
           "{}: A {} and B {} do not fit W {} (need A [r, {}] and B [{}, r])", op, a.shape(), b.shape(), w.shape(), in,
           out);
  LR_CHECK(r >= 1 && r <= std::min(out, in), "{}: rank {} outside 1..min({}, {}) for W {}", op, r, out, in, w.shape());
}

// ‖ΔW‖ / ‖Uᵀ W V‖: Inf when only the projection vanishes, NaN when both do.
double ratio(double delta_norm, double projected) {
  return projected > 0    ? delta_norm / projected
         : delta_norm > 0 ? std::numeric_limits<double>::infinity()
                          : std::numeric_limits<double>::quiet_NaN();
}

// An orthonormal basis [n, r] of the column span of g [n, r] (f64, CPU), refusing a rank-deficient g.
Tensor orthonormal_columns(const Tensor& g, const char* which) {
  const Svd d = svd(g);
  const std::vector<double> s = d.s.to_vector<double>();
  LR_CHECK(s.back() > 1e-12 * s.front(), "amplification_report: the random {} {} is rank-deficient", which, g.shape());
  return d.u;
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
  check_adapter("delta_report", w, a, b);
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
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
  rep.amplification = ratio(rep.delta_norm, rep.projected_w_norm);
  return rep;
}

void to_json(nlohmann::json& j, const AmplificationReport& r) {
  auto directions = [](const AmplificationReport::Directions& d) {
    return nlohmann::json{{"projected_w_norm", number_or_null(d.projected_w_norm)},
                          {"amplification", number_or_null(d.amplification)}};
  };
  j = nlohmann::json{{"out", r.out},
                     {"in", r.in},
                     {"rank", r.rank},
                     {"scale", r.scale},
                     {"seed", r.seed},
                     {"w_norm", number_or_null(r.w_norm)},
                     {"delta_norm", number_or_null(r.delta_norm)},
                     {"delta", directions(r.delta)},
                     {"w", directions(r.w)},
                     {"random", directions(r.random)}};
}

AmplificationReport amplification_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale,
                                         const Tensor& random_u, const Tensor& random_v) {
  check_adapter("amplification_report", w, a, b);
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
  LR_CHECK(std::isfinite(scale), "amplification_report: scale {} must be finite", scale);
  LR_CHECK(random_u.defined() && random_v.defined() && is_float(random_u) && is_float(random_v),
           "amplification_report: the random directions must be f32/f64 tensors");
  LR_CHECK(
      random_u.shape() == (Shape{out, r}) && random_v.shape() == (Shape{in, r}),
      "amplification_report: random directions U {} and V {} do not fit W {} at rank {} (need [{}, {}] and [{}, {}])",
      random_u.shape(), random_v.shape(), w.shape(), r, out, r, in, r);

  NoGradGuard no_grad;
  const Tensor w64 = to_cpu_f64(w);
  const Tensor dw = mul(matmul(to_cpu_f64(b), to_cpu_f64(a)), scale);
  const Svd sw = svd(w64), sd = svd(dw);
  // ‖Uᵀ W V‖_F with U [out, r] and V [in, r].
  auto projected = [&](const Tensor& u, const Tensor& v) { return frobenius(matmul(matmul(u.mT(), w64), v)); };

  AmplificationReport rep;
  rep.out = out, rep.in = in, rep.rank = r, rep.scale = scale;
  rep.w_norm = frobenius(w64);
  rep.delta_norm = frobenius(dw);
  auto fill = [&](AmplificationReport::Directions& d, const Tensor& u, const Tensor& v) {
    d.projected_w_norm = projected(u, v);
    d.amplification = ratio(rep.delta_norm, d.projected_w_norm);
  };
  fill(rep.delta, sd.u.narrow(1, 0, r), sd.vt.narrow(0, 0, r).mT());
  fill(rep.w, sw.u.narrow(1, 0, r), sw.vt.narrow(0, 0, r).mT());
  fill(rep.random, orthonormal_columns(to_cpu_f64(random_u), "U"), orthonormal_columns(to_cpu_f64(random_v), "V"));
  return rep;
}

AmplificationReport amplification_report(const Tensor& w, const Tensor& a, const Tensor& b, double scale,
                                         uint64_t seed) {
  check_adapter("amplification_report", w, a, b);
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
  NoGradGuard no_grad;
  const Tensor u = randn({out, r}, seed, 0, DType::F64);
  // Philox counters past every one U used (each covers four values), so V's draws are fresh.
  const Tensor v = randn({in, r}, seed, static_cast<uint64_t>(out * r), DType::F64);
  AmplificationReport rep = amplification_report(w, a, b, scale, u, v);
  rep.seed = seed;
  return rep;
}

}  // namespace lowrank::analysis
