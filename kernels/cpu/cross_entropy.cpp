// CPU fused softmax-cross-entropy from logits [N, C] and int64 labels [N], forward and backward.
// The op has validated the labels; ignored rows give loss 0 and gradient 0. Forward keeps each
// row's log-sum-exp, so backward is one pass: exp(x - lse)·g. f32 rows use the vectorised exp of
// vec_math.h with the sum widened to f64 (at GPT-2's 50257 classes scalar f64 exp was 19-32% of a
// training step); f64 rows keep libm's exp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace lowrank::cpu {
namespace {

// Rows of fewer elements than this in all run on the calling thread (a row costs ~1 ns an element).
constexpr int64_t kCrossEntropyParallelMin = int64_t{1} << 16;

// log(sum(exp(x - max))) + max over one row, the sum in f64.
double logsumexp_row(const float* x, int64_t c) {
  const float mx = row_max_f32(x, c);
  return std::log(exp_shift_sum_f64(x, c, mx)) + static_cast<double>(mx);
}
double logsumexp_row(const double* x, int64_t c) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < c; ++j) mx = std::max(mx, x[j]);
  double s = 0;
  for (int64_t j = 0; j < c; ++j) s += std::exp(x[j] - mx);
  return std::log(s) + mx;
}

// out[j] = exp(x[j] - lse) · g
void scaled_softmax_row(const float* x, float* out, int64_t c, float lse, float g) {
  exp_shift_scale(x, out, c, lse, g);
}
void scaled_softmax_row(const double* x, double* out, int64_t c, double lse, double g) {
  for (int64_t j = 0; j < c; ++j) out[j] = std::exp(x[j] - lse) * g;
}

template <class T>
void forward_typed(const T* x, const int64_t* labels, int64_t ignore, T* losses, T* lse, int64_t n, int64_t c) {
  parallel_for(n, n * c >= kCrossEntropyParallelMin, [&](int64_t i) {
    const int64_t l = labels[i];
    if (l == ignore) {
      losses[i] = 0;
      lse[i] = 0;
      return;
    }
    const T* row = x + i * c;
    const double s = logsumexp_row(row, c);
    losses[i] = static_cast<T>(s - static_cast<double>(row[l]));
    lse[i] = static_cast<T>(s);
  });
}

template <class T>
void backward_typed(const T* x, const int64_t* labels, int64_t ignore, const T* lse, const T* gl, T* gx, int64_t n,
                    int64_t c) {
  parallel_for(n, n * c >= kCrossEntropyParallelMin, [&](int64_t i) {
    const int64_t l = labels[i];
    T* out = gx + i * c;
    if (l == ignore) {
      std::fill(out, out + c, T(0));
      return;
    }
    scaled_softmax_row(x + i * c, out, c, lse[i], gl[i]);
    out[l] -= gl[i];
  });
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses,
                   const Tensor& lse) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const auto* lb = static_cast<const int64_t*>(labels.raw_data());
  if (logits.dtype() == DType::F32)
    forward_typed(static_cast<const float*>(logits.raw_data()), lb, ignore_index,
                  static_cast<float*>(losses.raw_data()), static_cast<float*>(lse.raw_data()), n, c);
  else
    forward_typed(static_cast<const double*>(logits.raw_data()), lb, ignore_index,
                  static_cast<double*>(losses.raw_data()), static_cast<double*>(lse.raw_data()), n, c);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad_losses, const Tensor& grad_logits) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const auto* lb = static_cast<const int64_t*>(labels.raw_data());
  if (logits.dtype() == DType::F32)
    backward_typed(static_cast<const float*>(logits.raw_data()), lb, ignore_index,
                   static_cast<const float*>(lse.raw_data()), static_cast<const float*>(grad_losses.raw_data()),
                   static_cast<float*>(grad_logits.raw_data()), n, c);
  else
    backward_typed(static_cast<const double*>(logits.raw_data()), lb, ignore_index,
                   static_cast<const double*>(lse.raw_data()), static_cast<const double*>(grad_losses.raw_data()),
                   static_cast<double*>(grad_logits.raw_data()), n, c);
}

}  // namespace lowrank::cpu
