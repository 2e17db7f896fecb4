// CPU fused softmax-cross-entropy from logits [N, C] and int64 labels [N], forward and backward.
// The op has validated the labels; ignored rows give loss 0 and gradient 0.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {
namespace {

// log(sum(exp(x - max))) + max over one row, accumulated in f64.
template <class T>
double logsumexp_row(const T* x, int64_t c) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < c; ++j) mx = std::max(mx, x[j]);
  double s = 0;
  for (int64_t j = 0; j < c; ++j) s += std::exp(static_cast<double>(x[j]) - static_cast<double>(mx));
  return std::log(s) + static_cast<double>(mx);
}

template <class T>
void forward_typed(const T* x, const int64_t* labels, int64_t ignore, T* losses, int64_t n, int64_t c) {
  parallel_for(n, n * c >= kParallelMinElems, [&](int64_t i) {
    const int64_t l = labels[i];
    if (l == ignore) {
      losses[i] = 0;
      return;
    }
    const T* row = x + i * c;
    losses[i] = static_cast<T>(logsumexp_row(row, c) - static_cast<double>(row[l]));
  });
}

template <class T>
void backward_typed(const T* x, const int64_t* labels, int64_t ignore, const T* gl, T* gx, int64_t n, int64_t c) {
  parallel_for(n, n * c >= kParallelMinElems, [&](int64_t i) {
    const int64_t l = labels[i];
    T* out = gx + i * c;
    if (l == ignore) {
      std::fill(out, out + c, T(0));
      return;
    }
    const T* row = x + i * c;
    const double lse = logsumexp_row(row, c);
    const double g = static_cast<double>(gl[i]);
    for (int64_t j = 0; j < c; ++j) out[j] = static_cast<T>(std::exp(static_cast<double>(row[j]) - lse) * g);
    out[l] -= static_cast<T>(g);
  });
}

}  // namespace

void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const auto* lb = static_cast<const int64_t*>(labels.raw_data());
  if (logits.dtype() == DType::F32)
    forward_typed(static_cast<const float*>(logits.raw_data()), lb, ignore_index,
                  static_cast<float*>(losses.raw_data()), n, c);
  else
    forward_typed(static_cast<const double*>(logits.raw_data()), lb, ignore_index,
                  static_cast<double*>(losses.raw_data()), n, c);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& grad_losses,
                            const Tensor& grad_logits) {
  const int64_t n = logits.size(0), c = logits.size(1);
  const auto* lb = static_cast<const int64_t*>(labels.raw_data());
  if (logits.dtype() == DType::F32)
    backward_typed(static_cast<const float*>(logits.raw_data()), lb, ignore_index,
                   static_cast<const float*>(grad_losses.raw_data()), static_cast<float*>(grad_logits.raw_data()), n,
                   c);
  else
    backward_typed(static_cast<const double*>(logits.raw_data()), lb, ignore_index,
                   static_cast<const double*>(grad_losses.raw_data()), static_cast<double*>(grad_logits.raw_data()), n,
                   c);
}

}  // namespace lowrank::cpu
