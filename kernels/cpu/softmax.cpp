// CPU softmax / log_softmax over the last axis of contiguous [rows, cols], and their backward.
// The oracle of kernels/cuda's softmax kernels. f32 rows use vec_math.h's exp instead of libm's.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace lowrank::cpu {
namespace {

// Row helpers: f32 through the vectorised exp of vec_math.h (sums widened to f64), f64 through libm.
float max_of(const float* x, int64_t n) {
  return row_max_f32(x, n);
}
double max_of(const double* x, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}
double sum_exp(const float* x, int64_t n, float shift) {
  return exp_shift_sum_f64(x, n, shift);
}
double sum_exp(const double* x, int64_t n, double shift) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] - shift);
  return s;
}
// y[j] = exp(x[j] - shift) · scale
void exp_scaled(const float* x, float* y, int64_t n, float shift, float scale) {
  exp_shift_scale(x, y, n, shift, scale);
}
void exp_scaled(const double* x, double* y, int64_t n, double shift, double scale) {
  for (int64_t j = 0; j < n; ++j) y[j] = std::exp(x[j] - shift) * scale;
}

template <class T>
void softmax_typed(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, rows * cols >= kParallelMinElems, [&](int64_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T mx = max_of(xr, cols);
    // Sums in f64: vocabulary-wide rows (50k) stay accurate in f32.
    if (log) {
      const T lse = static_cast<T>(std::log(sum_exp(xr, cols, mx))) + mx;
      for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - lse;
    } else {
      exp_scaled(xr, yr, cols, mx, T(1));
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(yr[j]);
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
    }
  });
}

template <class T>
void softmax_backward_typed(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, rows * cols >= kParallelMinElems, [&](int64_t r) {
    const T* yr = y + r * cols;
    const T* gr = gy + r * cols;
    T* xr = gx + r * cols;
    double s = 0;
    if (log) {  // y = log p: gx = gy - p * sum(gy)
      for (int64_t j = 0; j < cols; ++j) s += gr[j];
      const T st = static_cast<T>(s);
      exp_scaled(yr, xr, cols, T(0), st);  // p · sum(gy)
      for (int64_t j = 0; j < cols; ++j) xr[j] = gr[j] - xr[j];
    } else {  // gx = y * (gy - <gy, y>)
      for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(gr[j]) * yr[j];
      const T st = static_cast<T>(s);
      for (int64_t j = 0; j < cols; ++j) xr[j] = yr[j] * (gr[j] - st);
    }
  });
}

}  // namespace

void softmax(const Tensor& x, const Tensor& y, bool log) {
  const int64_t rows = x.size(0), cols = x.size(1);
  if (x.dtype() == DType::F32)
    softmax_typed(static_cast<const float*>(x.raw_data()), static_cast<float*>(y.raw_data()), rows, cols, log);
  else
    softmax_typed(static_cast<const double*>(x.raw_data()), static_cast<double*>(y.raw_data()), rows, cols, log);
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  const int64_t rows = y.size(0), cols = y.size(1);
  if (y.dtype() == DType::F32)
    softmax_backward_typed(static_cast<const float*>(y.raw_data()), static_cast<const float*>(gy.raw_data()),
                           static_cast<float*>(gx.raw_data()), rows, cols, log);
  else
    softmax_backward_typed(static_cast<const double*>(y.raw_data()), static_cast<const double*>(gy.raw_data()),
                           static_cast<double*>(gx.raw_data()), rows, cols, log);
}

}  // namespace lowrank::cpu
