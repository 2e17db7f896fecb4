// CPU layer norm over the last axis of contiguous [rows, D], forward (saving mean and 1/std per
// row) and backward (gx, and gw/gb summed over rows). The oracle of kernels/cuda's layernorm.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {
namespace {

template <class T>
void forward_typed(const T* x, const T* w, const T* b, double eps, T* y, T* mean, T* rstd, int64_t rows, int64_t d) {
  parallel_for(rows, rows * d >= kParallelMinElems, [&](int64_t r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    // Two passes in f64: the variance of rows with a large mean stays accurate.
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += xr[j];
    const double mu = s / static_cast<double>(d);
    double v = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double c = xr[j] - mu;
      v += c * c;
    }
    const double rs = 1.0 / std::sqrt(v / static_cast<double>(d) + eps);
    const T mu_t = static_cast<T>(mu), rs_t = static_cast<T>(rs);
    for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mu_t) * rs_t * w[j] + b[j];
    mean[r] = mu_t;
    rstd[r] = rs_t;
  });
}

// gx = rstd * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)), gxhat = gy * w;
// gw = sum_rows(gy * xhat), gb = sum_rows(gy), from per-thread partial sums.
template <class T>
void backward_typed(const T* x, const T* w, const T* mean, const T* rstd, const T* gy, T* gx, T* gw, T* gb,
                    int64_t rows, int64_t d) {
  const bool par = rows > 1 && rows * d >= kParallelMinElems;
  const int nt = par ? parallel_threads() : 1;
  std::vector<double> part(static_cast<size_t>(nt) * 2 * static_cast<size_t>(d), 0.0);
  auto row = [&](int64_t r, double* pw, double* pb) {
    const T* xr = x + r * d;
    const T* gr = gy + r * d;
    T* out = gx + r * d;
    const double mu = mean[r], rs = rstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double xh = (xr[j] - mu) * rs, g = gr[j];
      const double gxh = g * w[j];
      s1 += gxh;
      s2 += gxh * xh;
      pw[j] += g * xh;
      pb[j] += g;
    }
    const double m1 = s1 / static_cast<double>(d), m2 = s2 / static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) {
      const double xh = (xr[j] - mu) * rs;
      out[j] = static_cast<T>(rs * (static_cast<double>(gr[j]) * w[j] - m1 - xh * m2));
    }
  };
  // Part p sums its own rows into its own slice, and the slices are added in part order: the
  // bits depend on the thread count only, not on scheduling.
  parallel_chunks(rows, nt > 1, [&](int64_t r0, int64_t r1, int p) {
    double* pw = part.data() + static_cast<size_t>(p) * 2 * static_cast<size_t>(d);
    for (int64_t r = r0; r < r1; ++r) row(r, pw, pw + d);
  });
  for (int64_t j = 0; j < d; ++j) {
    double sw = 0, sb = 0;
    for (int t = 0; t < nt; ++t) {
      sw += part[static_cast<size_t>(t) * 2 * static_cast<size_t>(d) + static_cast<size_t>(j)];
      sb += part[static_cast<size_t>(t) * 2 * static_cast<size_t>(d) + static_cast<size_t>(d + j)];
    }
    gw[j] = static_cast<T>(sw);
    gb[j] = static_cast<T>(sb);
  }
}

template <class T>
const T* ptr(const Tensor& t) {
  return static_cast<const T*>(t.raw_data());
}
template <class T>
T* mptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd) {
  const int64_t rows = x.size(0), d = x.size(1);
  if (x.dtype() == DType::F32)
    forward_typed(ptr<float>(x), ptr<float>(w), ptr<float>(b), eps, mptr<float>(y), mptr<float>(mean),
                  mptr<float>(rstd), rows, d);
  else
    forward_typed(ptr<double>(x), ptr<double>(w), ptr<double>(b), eps, mptr<double>(y), mptr<double>(mean),
                  mptr<double>(rstd), rows, d);
}

void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const int64_t rows = x.size(0), d = x.size(1);
  if (x.dtype() == DType::F32)
    backward_typed(ptr<float>(x), ptr<float>(w), ptr<float>(mean), ptr<float>(rstd), ptr<float>(gy), mptr<float>(gx),
                   mptr<float>(gw), mptr<float>(gb), rows, d);
  else
    backward_typed(ptr<double>(x), ptr<double>(w), ptr<double>(mean), ptr<double>(rstd), ptr<double>(gy),
                   mptr<double>(gx), mptr<double>(gw), mptr<double>(gb), rows, d);
}

}  // namespace lowrank::cpu
