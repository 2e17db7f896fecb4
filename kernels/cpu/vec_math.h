// Vectorised f32 row arithmetic shared by the CPU kernels (attention, cross-entropy, GELU): exp by
// a polynomial, eight lanes at a time with AVX2 + FMA when the CPU has them, a scalar twin else.
// glibc's expf/tanhf/expm1f are a call per element and were 15-30% of a GPT-2 training step.
#pragma once
#include <cstdint>

namespace lowrank::cpu {

// exp(x) in f32 within 2 ulp for x in [-87, 88]; below -87 it gives e^-87 ~ 1.6e-38 (nil against
// any sum that holds a row maximum's e^0), above 88 it saturates at e^88.
float exp_poly(float x);

// x[j] = exp(x[j] - shift) for j < n; returns their sum (f32 lanes).
float exp_shift_sum(float* x, int64_t n, float shift);
double exp_shift_sum(double* x, int64_t n, double shift);

// sum_j exp(x[j] - shift), nothing stored; lanes are widened and summed in f64, so a 50K-class
// row loses no more than f64 rounding to the summation.
double exp_shift_sum_f64(const float* x, int64_t n, float shift);

// out[j] = exp(x[j] - shift) * scale.
void exp_shift_scale(const float* x, float* out, int64_t n, float shift, float scale);

// max_j x[j] (-inf for n == 0).
float row_max_f32(const float* x, int64_t n);

// GELU, tanh approximation, written as x·sigmoid(2u), u = sqrt(2/pi)(x + 0.044715x³) (the same
// function: (1 + tanh u)/2 = sigmoid(2u)), and its derivative times gy.
void gelu_f32(const float* x, float* out, int64_t n);
void gelu_backward_f32(const float* x, const float* gy, float* out, int64_t n);

}  // namespace lowrank::cpu
