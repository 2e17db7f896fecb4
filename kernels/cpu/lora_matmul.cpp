// CPU fused LoRA matmul: OpenBLAS GEMMs that accumulate into the output (beta = 1) around one
// r-wide temporary, so y = base_scale·x Wᵀ + b + scale·(x Aᵀ) Bᵀ makes no other copies.
// It is the oracle of the CUDA kernels in kernels/cuda/lora_matmul.cu.

#include <cstring>

#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_kernels.h"

namespace lowrank::cpu {
namespace {

template <class T>
void forward_typed(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                   double base_scale, const Tensor& y, const Tensor& xa) {
  const int64_t m = x.size(0), in = x.size(1), out = w.size(0), r = a.size(0);
  const T* px = static_cast<const T*>(x.raw_data());
  T* py = static_cast<T*>(y.raw_data());
  T* pxa = static_cast<T*>(xa.raw_data());
  double beta = 0.0;
  if (b.defined()) {  // seed y with the bias rows, then every GEMM accumulates
    const T* pb = static_cast<const T*>(b.raw_data());
    for (int64_t i = 0; i < m; ++i) std::memcpy(py + i * out, pb, static_cast<size_t>(out) * sizeof(T));
    beta = 1.0;
  }
  if (m == 0) return;
  // y (+)= base_scale · x Wᵀ
  gemm_rm(false, true, m, out, in, base_scale, px, in, static_cast<const T*>(w.raw_data()), in, beta, py, out);
  // xa = x Aᵀ  (the r-wide temporary, kept for backward)
  gemm_rm(false, true, m, r, in, 1.0, px, in, static_cast<const T*>(a.raw_data()), in, 0.0, pxa, r);
  // y += scale · xa Bᵀ
  gemm_rm(false, true, m, out, r, scale, pxa, r, static_cast<const T*>(bm.raw_data()), r, 1.0, py, out);
}

template <class T>
void backward_typed(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                    const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                    const Tensor& gb, const Tensor& ga, const Tensor& gbm) {
  const int64_t m = x.size(0), in = x.size(1), out = w.size(0), r = a.size(0);
  const T* px = static_cast<const T*>(x.raw_data());
  const T* pgy = static_cast<const T*>(gy.raw_data());
  const T* pw = static_cast<const T*>(w.raw_data());
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pbm = static_cast<const T*>(bm.raw_data());
  const T* pxa = static_cast<const T*>(xa.raw_data());
  auto zero = [](const Tensor& t) {
    if (t.defined() && t.numel() > 0) std::memset(t.raw_data(), 0, t.nbytes());
  };
  if (m == 0) {
    zero(gx), zero(gw), zero(gb), zero(ga), zero(gbm);
    return;
  }
  // gyb = gy B  [m, r]: the one r-wide temporary of the backward pass.
  Tensor gyb_t;
  const T* pgyb = nullptr;
  if (gx.defined() || ga.defined()) {
    gyb_t = Tensor::empty({m, r}, x.dtype(), x.device());
    T* p = static_cast<T*>(gyb_t.raw_data());
    gemm_rm(false, false, m, r, out, 1.0, pgy, out, pbm, r, 0.0, p, r);
    pgyb = p;
  }
  if (gx.defined()) {  // gx = base_scale · gy W + scale · gyb A
    T* p = static_cast<T*>(gx.raw_data());
    gemm_rm(false, false, m, in, out, base_scale, pgy, out, pw, in, 0.0, p, in);
    gemm_rm(false, false, m, in, r, scale, pgyb, r, pa, in, 1.0, p, in);
  }
  if (ga.defined())  // gA = scale · gybᵀ x
    gemm_rm(true, false, r, in, m, scale, pgyb, r, px, in, 0.0, static_cast<T*>(ga.raw_data()), in);
  if (gbm.defined())  // gB = scale · gyᵀ xa
    gemm_rm(true, false, out, r, m, scale, pgy, out, pxa, r, 0.0, static_cast<T*>(gbm.raw_data()), r);
  if (gw.defined())  // gW = base_scale · gyᵀ x
    gemm_rm(true, false, out, in, m, base_scale, pgy, out, px, in, 0.0, static_cast<T*>(gw.raw_data()), in);
  if (gb.defined()) {  // gb = column sums of gy
    T* p = static_cast<T*>(gb.raw_data());
    std::memset(p, 0, static_cast<size_t>(out) * sizeof(T));
    for (int64_t i = 0; i < m; ++i) {
      const T* row = pgy + i * out;
#pragma omp simd
      for (int64_t j = 0; j < out; ++j) p[j] += row[j];
    }
  }
}

}  // namespace

void lora_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                  double base_scale, const Tensor& y, const Tensor& xa) {
  if (x.dtype() == DType::F32)
    forward_typed<float>(x, w, b, a, bm, scale, base_scale, y, xa);
  else
    forward_typed<double>(x, w, b, a, bm, scale, base_scale, y, xa);
}

void lora_backward(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                   const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                   const Tensor& gb, const Tensor& ga, const Tensor& gbm) {
  if (x.dtype() == DType::F32)
    backward_typed<float>(x, w, a, bm, xa, gy, scale, base_scale, gx, gw, gb, ga, gbm);
  else
    backward_typed<double>(x, w, a, bm, xa, gy, scale, base_scale, gx, gw, gb, ga, gbm);
}

}  // namespace lowrank::cpu
