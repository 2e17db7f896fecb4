// CPU Adam/AdamW step: one fused pass over a parameter (decay, both moments, bias-corrected
// update), in the operation order of torch.optim.Adam/AdamW's single-tensor path; the oracle of
// the CUDA twin.

#include <algorithm>
#include <cmath>

#include "core/cpu_features.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace lowrank::cpu {
namespace {

// Tensors from this many elements are split over the pool, in contiguous halves (whole cache
// lines), the halves kernels/cpu/gemm.cpp's cache split gives each thread of a Dense kernel and its
// gradient. The update is bound by its divisions and square root (~1.5 cycles an element on one
// core): the MLP's 100K-element kernel took 47 us on one thread, a fifth of its step. (From 2^20
// elements, as before, the MLP's Adam ran on one thread and the other core waited.)
constexpr int64_t kParallelMin = int64_t{1} << 14;

template <class T>
struct AdamScalars {
  T beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bc2_sqrt, eps, l2, decay;
};

// Scalars are formed in f64 and rounded once to T, as PyTorch passes Python floats to its kernels.
template <class T>
AdamScalars<T> adam_scalars(const AdamArgs& a) {
  const double bc1 = 1.0 - std::pow(a.beta1, static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(a.beta2, static_cast<double>(a.step));
  return {static_cast<T>(a.beta1),       static_cast<T>(a.beta2),        static_cast<T>(1.0 - a.beta1),
          static_cast<T>(1.0 - a.beta2), static_cast<T>(-(a.lr / bc1)),  static_cast<T>(std::sqrt(bc2)),
          static_cast<T>(a.eps),         static_cast<T>(a.weight_decay), static_cast<T>(1.0 - a.lr * a.weight_decay)};
}

// One element; kL2: grad += wd * param (Adam), kDecay: param *= 1 - lr * wd (AdamW).
template <class T, bool kL2, bool kDecay>
inline void adam_one(const AdamScalars<T>& s, T& p, T g, T& m, T& v) {
  T pi = p;
  if constexpr (kL2) g = g + s.l2 * pi;            // grad.add(param, alpha=wd)
  if constexpr (kDecay) pi = pi * s.decay;         // param.mul_(1 - lr * wd)
  T mi = m * s.beta1 + s.one_minus_beta1 * g;      // exp_avg.mul_(b1).add_(grad, alpha=1-b1)
  T vi = v * s.beta2 + s.one_minus_beta2 * g * g;  // exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
  T denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;    // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
  m = mi;
  v = vi;
  p = pi + s.neg_step_size * mi / denom;  // param.addcdiv_(exp_avg, denom, -step_size)
}

// ---- vector paths
// The same IEEE operations in the same order as adam_one, a vector at a time and without fused
// multiply-adds, so every element gets bit-identical results on every path (and results never
// depend on the CPU or on where a tensor's length puts the scalar tail). Written with intrinsics
// because GCC will not vectorise std::sqrt while it may set errno.
//
// The loop is written once as a macro and expanded twice: with the default (SSE2) target, and in
// an AVX2 target region chosen at run time, since a function's instruction set is fixed where it is
// defined. AVX2 runs the update at about the speed of the memory traffic alone (bench/optim_bench.cpp).
#define LR_ADAM_SIMD_LOOP(NAME)                                                                        \
  template <class S, class T, bool kL2, bool kDecay>                                                   \
  int64_t NAME(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t n) {                     \
    using V = typename S::V;                                                                           \
    const V beta1 = S::set(s.beta1), beta2 = S::set(s.beta2), omb1 = S::set(s.one_minus_beta1),        \
            omb2 = S::set(s.one_minus_beta2), nss = S::set(s.neg_step_size), bc2 = S::set(s.bc2_sqrt), \
            eps = S::set(s.eps), l2 = S::set(s.l2), decay = S::set(s.decay);                           \
    int64_t i = 0;                                                                                     \
    for (; i + S::kWidth <= n; i += S::kWidth) {                                                       \
      V pi = S::load(p + i), gi = S::load(g + i);                                                      \
      if constexpr (kL2) gi = S::add(gi, S::mul(l2, pi));                                              \
      if constexpr (kDecay) pi = S::mul(pi, decay);                                                    \
      V mi = S::add(S::mul(S::load(m + i), beta1), S::mul(omb1, gi));                                  \
      V vi = S::add(S::mul(S::load(v + i), beta2), S::mul(S::mul(omb2, gi), gi));                      \
      V denom = S::add(S::div(S::sqrt(vi), bc2), eps);                                                 \
      S::store(m + i, mi);                                                                             \
      S::store(v + i, vi);                                                                             \
      S::store(p + i, S::add(pi, S::div(S::mul(nss, mi), denom)));                                     \
    }                                                                                                  \
    return i;                                                                                          \
  }

// Traits: V, kWidth, load, store, set, add, mul, div, sqrt.
#define LR_ADAM_SIMD_TRAITS(NAME, FLOAT_V, DOUBLE_V, PS, PD, WIDTH) \
  template <class T>                                                \
  struct NAME;                                                      \
  template <>                                                       \
  struct NAME<float> {                                              \
    using V = FLOAT_V;                                              \
    static constexpr int kWidth = WIDTH;                            \
    static V load(const float* p) { return PS(loadu_ps)(p); }       \
    static void store(float* p, V x) { PS(storeu_ps)(p, x); }       \
    static V set(float x) { return PS(set1_ps)(x); }                \
    static V add(V a, V b) { return PS(add_ps)(a, b); }             \
    static V mul(V a, V b) { return PS(mul_ps)(a, b); }             \
    static V div(V a, V b) { return PS(div_ps)(a, b); }             \
    static V sqrt(V a) { return PS(sqrt_ps)(a); }                   \
  };                                                                \
  template <>                                                       \
  struct NAME<double> {                                             \
    using V = DOUBLE_V;                                             \
    static constexpr int kWidth = WIDTH / 2;                        \
    static V load(const double* p) { return PD(loadu_pd)(p); }      \
    static void store(double* p, V x) { PD(storeu_pd)(p, x); }      \
    static V set(double x) { return PD(set1_pd)(x); }               \
    static V add(V a, V b) { return PD(add_pd)(a, b); }             \
    static V mul(V a, V b) { return PD(mul_pd)(a, b); }             \
    static V div(V a, V b) { return PD(div_pd)(a, b); }             \
    static V sqrt(V a) { return PD(sqrt_pd)(a); }                   \
  };

#if defined(__SSE2__)
#define LR_MM(op) _mm_##op
LR_ADAM_SIMD_TRAITS(Sse, __m128, __m128d, LR_MM, LR_MM, 4)
LR_ADAM_SIMD_LOOP(adam_sse_loop)
#undef LR_MM
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LR_ADAM_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
#define LR_MM256(op) _mm256_##op
LR_ADAM_SIMD_TRAITS(Avx, __m256, __m256d, LR_MM256, LR_MM256, 8)
LR_ADAM_SIMD_LOOP(adam_avx_loop)
#undef LR_MM256
template <class T, bool kL2, bool kDecay>
int64_t adam_avx2(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t n) {
  return adam_avx_loop<Avx<T>, T, kL2, kDecay>(s, p, g, m, v, n);
}
#pragma GCC pop_options
bool have_avx2() {
  return cpu_has_avx2();
}
#endif

template <class T, bool kL2, bool kDecay>
void adam_range(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t begin, int64_t end) {
  int64_t i = begin;
#if defined(LR_ADAM_AVX2)
  if (have_avx2()) i += adam_avx2<T, kL2, kDecay>(s, p + i, g + i, m + i, v + i, end - i);
#endif
#if defined(__SSE2__)
  i += adam_sse_loop<Sse<T>, T, kL2, kDecay>(s, p + i, g + i, m + i, v + i, end - i);
#endif
  for (; i < end; ++i) adam_one<T, kL2, kDecay>(s, p[i], g[i], m[i], v[i]);
}

template <class T, bool kL2, bool kDecay>
void adam_loop(const AdamScalars<T>& s, T* p, const T* g, T* m, T* v, int64_t n) {
  if (n < kParallelMin) {
    adam_range<T, kL2, kDecay>(s, p, g, m, v, 0, n);
    return;
  }
  // Chunks are whole cache lines (16 floats); any split gives the same bits, the update being
  // elementwise.
  parallel_chunks((n + 15) / 16, true, [&](int64_t b0, int64_t b1, int) {
    adam_range<T, kL2, kDecay>(s, p, g, m, v, b0 * 16, std::min(n, b1 * 16));
  });
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
  if (a.weight_decay == 0.0)
    adam_loop<T, false, false>(s, p, g, pm, pv, n);
  else if (a.decoupled)
    adam_loop<T, false, true>(s, p, g, pm, pv, n);
  else
    adam_loop<T, true, false>(s, p, g, pm, pv, n);
}

}  // namespace

void adam_step(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v) {
  if (param.dtype() == DType::F32)
    adam_typed<float>(a, param, grad, m, v);
  else
    adam_typed<double>(a, param, grad, m, v);
}

}  // namespace lowrank::cpu
