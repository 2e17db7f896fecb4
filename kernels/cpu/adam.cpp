// CPU Adam/AdamW step: one fused pass over a parameter (decay, both moments, bias-corrected
// update), in the operation order of torch.optim.Adam/AdamW's single-tensor path; the oracle of
// the CUDA twin.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lowrank::cpu {
namespace {

// Below this many elements one thread is faster than waking the OpenMP team.
constexpr int64_t kParallelMin = int64_t{1} << 16;

template <class T>
struct AdamScalars {
  T beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bc2_sqrt, eps, l2, decay;
};

// Scalars are formed in f64 and rounded once to T, as PyTorch passes Python floats to its kernels.
template <class T>
AdamScalars<T> adam_scalars(const AdamArgs& a) {
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.step));
  return {static_cast<T>(a.beta1),          static_cast<T>(a.beta2),
          static_cast<T>(1.0 - a.beta1),    static_cast<T>(1.0 - a.beta2),
          static_cast<T>(-(a.lr / bc1)),    static_cast<T>(std::sqrt(bc2)),
          static_cast<T>(a.eps),            static_cast<T>(a.weight_decay),
          static_cast<T>(1.0 - a.lr * a.weight_decay)};
}

// One element; kL2: grad += wd * param (Adam), kDecay: param *= 1 - lr * wd (AdamW).
template <class T, bool kL2, bool kDecay>
inline void adam_one(const AdamScalars<T>& s, T& p, T g, T& m, T& v) {
  T pi = p;
  if constexpr (kL2) g = g + s.l2 * pi;      // grad.add(param, alpha=wd)
  if constexpr (kDecay) pi = pi * s.decay;   // param.mul_(1 - lr * wd)
  T mi = m * s.beta1 + s.one_minus_beta1 * g;                  // exp_avg.mul_(b1).add_(grad, alpha=1-b1)
  T vi = v * s.beta2 + s.one_minus_beta2 * g * g;              // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
  T denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;                // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
  m = mi;
  v = vi;
  p = pi + s.neg_step_size * mi / denom;                       // param.addcdiv_(exp_avg, denom, -step_size)
}

#if defined(__SSE2__)
// The same IEEE operations in the same order as adam_one, a vector at a time, so every element
// gets bit-identical results on either path. Written with intrinsics because GCC will not
// vectorise std::sqrt while it may set errno.
template <class T>
struct Sse;
template <>
struct Sse<float> {
  using V = __m128;
  static constexpr int kWidth = 4;
  static V load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  static V set(float x) { return _mm_set1_ps(x); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V div(V a, V b) { return _mm_div_ps(a, b); }
  static V sqrt(V a) { return _mm_sqrt_ps(a); }
};
template <>
struct Sse<double> {
  using V = __m128d;
  static constexpr int kWidth = 2;
  static V load(const double* p) { return _mm_loadu_pd(p); }
  static void store(double* p, V v) { _mm_storeu_pd(p, v); }
  static V set(double x) { return _mm_set1_pd(x); }
  static V add(V a, V b) { return _mm_add_pd(a, b); }
  static V mul(V a, V b) { return _mm_mul_pd(a, b); }
  static V div(V a, V b) { return _mm_div_pd(a, b); }
  static V sqrt(V a) { return _mm_sqrt_pd(a); }
};
#endif

template <class T, bool kL2, bool kDecay>
void adam_range(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t begin, int64_t end) {
  int64_t i = begin;
#if defined(__SSE2__)
  using S = Sse<T>;
  using V = typename S::V;
  const V beta1 = S::set(s.beta1), beta2 = S::set(s.beta2), omb1 = S::set(s.one_minus_beta1),
          omb2 = S::set(s.one_minus_beta2), nss = S::set(s.neg_step_size), bc2 = S::set(s.bc2_sqrt),
          eps = S::set(s.eps), l2 = S::set(s.l2), decay = S::set(s.decay);
  for (; i + S::kWidth <= end; i += S::kWidth) {
    V pi = S::load(p + i), gi = S::load(g + i);
    if constexpr (kL2) gi = S::add(gi, S::mul(l2, pi));
    if constexpr (kDecay) pi = S::mul(pi, decay);
    V mi = S::add(S::mul(S::load(m + i), beta1), S::mul(omb1, gi));
    V vi = S::add(S::mul(S::load(v + i), beta2), S::mul(S::mul(omb2, gi), gi));
    V denom = S::add(S::div(S::sqrt(vi), bc2), eps);
    S::store(m + i, mi);
    S::store(v + i, vi);
    S::store(p + i, S::add(pi, S::div(S::mul(nss, mi), denom)));
  }
#endif
  for (; i < end; ++i) adam_one<T, kL2, kDecay>(s, p[i], g[i], m[i], v[i]);
}

template <class T, bool kL2, bool kDecay>
void adam_loop(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t n) {
  if (n < kParallelMin) {
    adam_range<T, kL2, kDecay>(s, p, g, m, v, 0, n);
    return;
  }
#pragma omp parallel
  {
    // Static chunks rounded to 16 elements keep vector loads aligned to cache lines where the
    // buffers are; any split gives the same bits (the update is elementwise).
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
    int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    adam_range<T, kL2, kDecay>(s, p, g, m, v, begin, end);
  }
}

template <class T>
void adam_typed(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v) {
  AdamScalars<T> s = adam_scalars<T>(a);
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T *pm = m.data<T>(), *pv = v.data<T>();
  int64_t n = param.numel();
  // Compile-time decay branches keep the loop straight-line; a zero weight decay skips the
  // arithmetic entirely, as torch does (0 * inf would be NaN).
  if (a.weight_decay == 0.0) adam_loop<T, false, false>(s, p, g, pm, pv, n);
  else if (a.decoupled) adam_loop<T, false, true>(s, p, g, pm, pv, n);
  else adam_loop<T, true, false>(s, p, g, pm, pv, n);
}

}  // namespace

void adam_step(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v) {
  if (param.dtype() == DType::F32)
    adam_typed<float>(a, param, grad, m, v);
  else
    adam_typed<double>(a, param, grad, m, v);
}

}  // namespace lowrank::cpu
