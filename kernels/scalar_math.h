// The scalar arithmetic of every elementwise op, written once for the CPU kernels
// (kernels/cpu/elementwise.cpp) and the CUDA kernels (kernels/cuda/elementwise.cu), so the two
// backends cannot drift apart. An op missing here is a compile error, not a silent fall-through.
#pragma once
#include <cmath>
#include <type_traits>

#include "core/dispatch.h"

#if defined(__CUDACC__)
#define LR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LR_HOST_DEVICE inline
#endif

namespace lowrank::scalar {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

// false for every Op: a static_assert on it fires only in the branch that is instantiated.
template <auto Op>
inline constexpr bool kUnhandledOp = false;

// GELU, tanh approximation (GPT-2's "gelu_new"): 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x³))).
template <class T>
LR_HOST_DEVICE T gelu_tanh(T x) {
  T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluC) * x * x * x);
  return static_cast<T>(0.5) * x * (static_cast<T>(1) + std::tanh(u));
}

template <class T>
LR_HOST_DEVICE T gelu_tanh_grad(T x) {
  T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluC) * x * x * x);
  T t = std::tanh(u);
  T du = static_cast<T>(kSqrt2OverPi) * (static_cast<T>(1) + static_cast<T>(3 * kGeluC) * x * x);
  return static_cast<T>(0.5) * (static_cast<T>(1) + t) + static_cast<T>(0.5) * x * (static_cast<T>(1) - t * t) * du;
}

// y = op(x) with the scalar operand a (AddScalar ... RDivScalar).
template <class T, UnaryOp Op>
LR_HOST_DEVICE T apply_unary(T x, T a) {
  if constexpr (Op == UnaryOp::Neg)
    return -x;
  else if constexpr (Op == UnaryOp::Exp)
    return std::exp(x);
  else if constexpr (Op == UnaryOp::Log)
    return std::log(x);
  else if constexpr (Op == UnaryOp::Sqrt)
    return std::sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt)
    return static_cast<T>(1) / std::sqrt(x);
  else if constexpr (Op == UnaryOp::Tanh)
    return std::tanh(x);
  else if constexpr (Op == UnaryOp::Sigmoid)
    return static_cast<T>(1) / (static_cast<T>(1) + std::exp(-x));
  else if constexpr (Op == UnaryOp::Relu)
    return x > 0 ? x : static_cast<T>(0);
  else if constexpr (Op == UnaryOp::Gelu)
    return gelu_tanh(x);
  else if constexpr (Op == UnaryOp::Abs)
    return std::abs(x);
  else if constexpr (Op == UnaryOp::Sign)
    return static_cast<T>((x > 0) - (x < 0));
  else if constexpr (Op == UnaryOp::AddScalar)
    return x + a;
  else if constexpr (Op == UnaryOp::MulScalar)
    return x * a;
  else if constexpr (Op == UnaryOp::PowScalar)
    return a == static_cast<T>(2) ? x * x : std::pow(x, a);
  else if constexpr (Op == UnaryOp::RSubScalar)
    return a - x;
  else if constexpr (Op == UnaryOp::RDivScalar)
    return a / x;
  else
    static_assert(kUnhandledOp<Op>, "apply_unary: an op of UnaryOp has no formula here");
}

// z = op(x, y) with the scalar operand a (MaskedFill's fill value).
template <class T, BinaryOp Op>
LR_HOST_DEVICE T apply_binary(T x, T y, T a) {
  if constexpr (Op == BinaryOp::Add)
    return x + y;
  else if constexpr (Op == BinaryOp::Sub)
    return x - y;
  else if constexpr (Op == BinaryOp::Mul)
    return x * y;
  else if constexpr (Op == BinaryOp::Div)
    return x / y;
  else if constexpr (Op == BinaryOp::Pow)
    return std::pow(x, y);
  else if constexpr (Op == BinaryOp::Maximum)
    return x >= y ? x : y;
  else if constexpr (Op == BinaryOp::Minimum)
    return x <= y ? x : y;
  else if constexpr (Op == BinaryOp::Eq)
    return static_cast<T>(x == y);
  else if constexpr (Op == BinaryOp::Ne)
    return static_cast<T>(x != y);
  else if constexpr (Op == BinaryOp::Lt)
    return static_cast<T>(x < y);
  else if constexpr (Op == BinaryOp::Le)
    return static_cast<T>(x <= y);
  else if constexpr (Op == BinaryOp::Gt)
    return static_cast<T>(x > y);
  else if constexpr (Op == BinaryOp::Ge)
    return static_cast<T>(x >= y);
  else if constexpr (Op == BinaryOp::MaskedFill)
    return y != static_cast<T>(0) ? a : x;
  else if constexpr (Op == BinaryOp::ReluBackward)
    return x > 0 ? y : static_cast<T>(0);
  else if constexpr (Op == BinaryOp::GeluBackward)
    return y * gelu_tanh_grad(x);
  else
    static_assert(kUnhandledOp<Op>, "apply_binary: an op of BinaryOp has no formula here");
}

}  // namespace lowrank::scalar
