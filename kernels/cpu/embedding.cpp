// CPU embedding gather (rows of weight at int64 ids) and its scatter-add backward.
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {
namespace {

template <class T>
void backward_typed(const T* g, const int64_t* ids, T* gw, int64_t n, int64_t d) {
  // Serial over ids: repeated ids add into the same row, so rows cannot be split between threads.
  for (int64_t i = 0; i < n; ++i) {
    const T* src = g + i * d;
    T* dst = gw + ids[i] * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
  }
}

}  // namespace

bool embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  const int64_t v = weight.size(0), d = weight.size(1), n = ids.numel();
  const auto* pid = static_cast<const int64_t*>(ids.raw_data());
  for (int64_t i = 0; i < n; ++i)
    if (pid[i] < 0 || pid[i] >= v) return false;
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(weight.dtype());
  const auto* pw = static_cast<const char*>(weight.raw_data());
  auto* po = static_cast<char*>(out.raw_data());
  parallel_for(n, n * d >= kParallelMinElems, [&](int64_t i) {
    std::memcpy(po + static_cast<size_t>(i) * row_bytes, pw + static_cast<size_t>(pid[i]) * row_bytes, row_bytes);
  });
  return true;
}

void embedding_backward(const Tensor& grad, const Tensor& ids, const Tensor& grad_weight) {
  const int64_t d = grad_weight.size(1), n = ids.numel();
  const auto* pid = static_cast<const int64_t*>(ids.raw_data());
  if (grad.dtype() == DType::F32)
    backward_typed(static_cast<const float*>(grad.raw_data()), pid, static_cast<float*>(grad_weight.raw_data()), n, d);
  else
    backward_typed(static_cast<const double*>(grad.raw_data()), pid, static_cast<double*>(grad_weight.raw_data()), n,
                   d);
}

}  // namespace lowrank::cpu
