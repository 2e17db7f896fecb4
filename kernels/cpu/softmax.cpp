// CPU softmax / log_softmax over the last axis of contiguous [rows, cols], and their backward.
// The oracle of kernels/cuda's softmax kernels.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {
namespace {

template <class T>
void softmax_typed(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, rows * cols >= kParallelMinElems, [&](int64_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, xr[j]);
    double s = 0;  // f64 accumulation: vocabulary-wide rows (50k) stay accurate in f32
    if (log) {
      for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(xr[j] - mx));
      const T lse = static_cast<T>(std::log(s)) + mx;
      for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - lse;
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        T e = std::exp(xr[j] - mx);
        yr[j] = e;
        s += e;
      }
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
      for (int64_t j = 0; j < cols; ++j) xr[j] = gr[j] - std::exp(yr[j]) * st;
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
