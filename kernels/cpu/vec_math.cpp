// Vectorised f32 exp and what is built on it (kernels/cpu/vec_math.h). The AVX2 paths are written
// with intrinsics: the compiler's vectoriser leaves the clamps scalar under trapping math. Each
// has a scalar twin (same polynomial) for other CPUs and for the tails of rows.
#include "kernels/cpu/vec_math.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "core/cpu_features.h"

namespace lowrank::cpu {
namespace {

// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6 polynomial for e^r.
constexpr float kExpLo = -87.0f, kExpHi = 88.0f, kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
constexpr float kSqrt2OverPi = 0.7978845608028654f, kGeluC = 0.044715f;

// sigmoid(2u) for GELU: 1 / (1 + exp(-2u)).
inline float gelu_gate(float x) {
  const float u = kSqrt2OverPi * (x + kGeluC * x * x * x);
  return 1.0f / (1.0f + exp_poly(-2.0f * u));
}

#if defined(__x86_64__)
bool has_avx2() {
  return cpu_has_avx2_fma();
}

[[gnu::target("avx2,fma")]] inline __m256 exp256(__m256 v) {
  // The bound first: maxps/minps return their second operand when one is NaN, so NaN goes through.
  v = _mm256_min_ps(_mm256_set1_ps(kExpHi), _mm256_max_ps(_mm256_set1_ps(kExpLo), v));
  const __m256 k =
      _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Hi), v);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

[[gnu::target("avx2,fma")]] float hsum256(__m256 acc) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

[[gnu::target("avx2,fma")]] float exp_shift_sum_avx2(float* x, int64_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh));
    _mm256_storeu_ps(x + j, v);
    acc = _mm256_add_ps(acc, v);
  }
  float s = hsum256(acc);
  for (; j < n; ++j) {
    x[j] = exp_poly(x[j] - shift);
    s += x[j];
  }
  return s;
}

[[gnu::target("avx2,fma")]] double exp_shift_sum_f64_avx2(const float* x, int64_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  alignas(32) double l[4], h[4];
  _mm256_store_pd(l, lo);
  _mm256_store_pd(h, hi);
  double s = ((l[0] + h[0]) + (l[1] + h[1])) + ((l[2] + h[2]) + (l[3] + h[3]));
  for (; j < n; ++j) s += static_cast<double>(exp_poly(x[j] - shift));
  return s;
}

[[gnu::target("avx2,fma")]] void exp_shift_scale_avx2(const float* x, float* out, int64_t n, float shift, float scale) {
  const __m256 sh = _mm256_set1_ps(shift), sc = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(out + j, _mm256_mul_ps(exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh)), sc));
  for (; j < n; ++j) out[j] = exp_poly(x[j] - shift) * scale;
}

[[gnu::target("avx2,fma")]] float row_max_f32_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = lanes[0];
  for (int i = 1; i < 8; ++i) r = std::max(r, lanes[i]);
  for (; j < n; ++j) r = std::max(r, x[j]);
  return r;
}

// The gate sigmoid(2u) of eight lanes.
[[gnu::target("avx2,fma")]] inline __m256 gelu_gate256(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(_mm256_set1_ps(kGeluC), x3, x));
  const __m256 e = exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
  return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

[[gnu::target("avx2,fma")]] void gelu_avx2(const float* x, float* out, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(v, gelu_gate256(v)));
  }
  for (; j < n; ++j) out[j] = x[j] * gelu_gate(x[j]);
}

// d/dx x·s(x), s = sigmoid(2u): s + x · 2s(1-s) · u'(x), u' = sqrt(2/pi)(1 + 3·0.044715x²).
[[gnu::target("avx2,fma")]] void gelu_backward_avx2(const float* x, const float* gy, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    const __m256 s = gelu_gate256(v);
    const __m256 du = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                                    _mm256_fmadd_ps(_mm256_set1_ps(3.0f * kGeluC), _mm256_mul_ps(v, v), one));
    const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(two, s), _mm256_sub_ps(one, s));
    const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(v, ds), du, s);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(gy + j), d));
  }
  for (; j < n; ++j) {
    const float v = x[j], s = gelu_gate(v);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * v * v);
    out[j] = gy[j] * (s + v * (2.0f * s * (1.0f - s)) * du);
  }
}
#else
constexpr bool has_avx2() {
  return false;
}
#endif

}  // namespace

float exp_poly(float x) {
  if (std::isnan(x)) return x;  // a NaN logit must give a NaN loss, not a clamped e^-87
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = kP0;
  for (float c : {kP1, kP2, kP3, kP4, kP5}) p = p * r + c;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

float exp_shift_sum(float* x, int64_t n, float shift) {
#if defined(__x86_64__)
  if (has_avx2()) return exp_shift_sum_avx2(x, n, shift);
#endif
  float s = 0;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = exp_poly(x[j] - shift);
    s += x[j];
  }
  return s;
}

double exp_shift_sum(double* x, int64_t n, double shift) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - shift);
    s += x[j];
  }
  return s;
}

double exp_shift_sum_f64(const float* x, int64_t n, float shift) {
#if defined(__x86_64__)
  if (has_avx2()) return exp_shift_sum_f64_avx2(x, n, shift);
#endif
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(exp_poly(x[j] - shift));
  return s;
}

void exp_shift_scale(const float* x, float* out, int64_t n, float shift, float scale) {
#if defined(__x86_64__)
  if (has_avx2()) return exp_shift_scale_avx2(x, out, n, shift, scale);
#endif
  for (int64_t j = 0; j < n; ++j) out[j] = exp_poly(x[j] - shift) * scale;
}

float row_max_f32(const float* x, int64_t n) {
#if defined(__x86_64__)
  if (has_avx2()) return row_max_f32_avx2(x, n);
#endif
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

void gelu_f32(const float* x, float* out, int64_t n) {
#if defined(__x86_64__)
  if (has_avx2()) return gelu_avx2(x, out, n);
#endif
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] * gelu_gate(x[j]);
}

void gelu_backward_f32(const float* x, const float* gy, float* out, int64_t n) {
#if defined(__x86_64__)
  if (has_avx2()) return gelu_backward_avx2(x, gy, out, n);
#endif
  for (int64_t j = 0; j < n; ++j) {
    const float v = x[j], s = gelu_gate(v);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * v * v);
    out[j] = gy[j] * (s + v * (2.0f * s * (1.0f - s)) * du);
  }
}

}  // namespace lowrank::cpu
