// CUDA fused Adam/AdamW step: one kernel reads param, grad and both moments once and writes
// them back, in the operation order of the CPU twin (kernels/cpu/adam.cpp, which follows
// torch.optim.Adam/AdamW), with the scalars formed in f64 on the host and rounded once to T.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

template <class T>
struct AdamScalars {
  T beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bc2_sqrt, eps, l2, decay;
};

// ---- kernels

// Mode 0: no weight decay; 1: L2 (grad += wd * param, Adam); 2: decoupled (AdamW).
template <class T, int Mode>
__global__ void adam_kernel(AdamScalars<T> k, T* p, const T* g, T* m, T* v, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    T pi = p[i];
    T gi = g[i];
    if constexpr (Mode == 1) gi = gi + k.l2 * pi;
    if constexpr (Mode == 2) pi = pi * k.decay;
    const T mi = m[i] * k.beta1 + k.one_minus_beta1 * gi;
    const T vi = v[i] * k.beta2 + k.one_minus_beta2 * gi * gi;
    const T denom = std::sqrt(vi) / k.bc2_sqrt + k.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + k.neg_step_size * mi / denom;
  }
}

}  // namespace

// ---- launchers

void adam_step(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v) {
  const int64_t n = param.numel();
  if (n == 0) return;
  const int dev = param.device().index;
  cudaStream_t s = stream(param.device());
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.step));
  visit_float(param.dtype(), [&](auto t) {
    using T = decltype(t);
    const AdamScalars<T> k{
        static_cast<T>(a.beta1),       static_cast<T>(a.beta2),        static_cast<T>(1.0 - a.beta1),
        static_cast<T>(1.0 - a.beta2), static_cast<T>(-(a.lr / bc1)),  static_cast<T>(std::sqrt(bc2)),
        static_cast<T>(a.eps),         static_cast<T>(a.weight_decay), static_cast<T>(1.0 - a.lr * a.weight_decay)};
    T* pp = static_cast<T*>(param.raw_data());
    const T* pg = static_cast<const T*>(grad.raw_data());
    T* pm = static_cast<T*>(m.raw_data());
    T* pv = static_cast<T*>(v.raw_data());
    const unsigned grid = grid_for(n, dev);
    if (a.weight_decay == 0.0)
      adam_kernel<T, 0><<<grid, kThreads, 0, s>>>(k, pp, pg, pm, pv, n);
    else if (a.decoupled)
      adam_kernel<T, 2><<<grid, kThreads, 0, s>>>(k, pp, pg, pm, pv, n);
    else
      adam_kernel<T, 1><<<grid, kThreads, 0, s>>>(k, pp, pg, pm, pv, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
