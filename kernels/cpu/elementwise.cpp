// CPU elementwise kernels: unary, binary (inputs pre-broadcast), copy with casts, fill. The
// per-element formulas are kernels/scalar_math.h (shared with CUDA); contiguous f32 GELU and its
// backward take the vectorised path of vec_math.h instead of libm's tanhf.
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/strided.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/scalar_math.h"

namespace lowrank::cpu {
namespace {

// The switch sits outside the element loop: one instantiation per op keeps the loop tight.
template <class T, UnaryOp Op>
void unary_loop(const Tensor& x, const Tensor& out, T a) {
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  auto L = make_loop<2>(out.shape(), {&x.strides(), &out.strides()});
  for_each_row(L, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    const T* xi = px + off[0];
    T* oi = po + off[1];
    if (st[0] == 1 && st[1] == 1) {
      if constexpr (std::is_same_v<T, float> && Op == UnaryOp::Gelu) return gelu_f32(xi, oi, n);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) oi[i] = scalar::apply_unary<T, Op>(xi[i], a);
    } else if (st[0] == 0 && st[1] == 1) {  // a broadcast input (e.g. the gradient of a sum)
      const T v = scalar::apply_unary<T, Op>(xi[0], a);
      for (int64_t i = 0; i < n; ++i) oi[i] = v;
    } else {
      for (int64_t i = 0; i < n; ++i) oi[i * st[1]] = scalar::apply_unary<T, Op>(xi[i * st[0]], a);
    }
  });
}

template <class T, BinaryOp Op>
void binary_loop(const Tensor& x, const Tensor& y, const Tensor& out, T a) {
  const T* px = static_cast<const T*>(x.raw_data());
  const T* py = static_cast<const T*>(y.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  auto L = make_loop<3>(out.shape(), {&x.strides(), &y.strides(), &out.strides()});
  for_each_row(L, [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
    const T* xi = px + off[0];
    const T* yi = py + off[1];
    T* oi = po + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      if constexpr (std::is_same_v<T, float> && Op == BinaryOp::GeluBackward) return gelu_backward_f32(xi, yi, oi, n);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) oi[i] = scalar::apply_binary<T, Op>(xi[i], yi[i], a);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const T yv = yi[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) oi[i] = scalar::apply_binary<T, Op>(xi[i], yv, a);
    } else if (st[0] == 0 && st[1] == 1 && st[2] == 1) {
      const T xv = xi[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) oi[i] = scalar::apply_binary<T, Op>(xv, yi[i], a);
    } else {
      for (int64_t i = 0; i < n; ++i) oi[i * st[2]] = scalar::apply_binary<T, Op>(xi[i * st[0]], yi[i * st[1]], a);
    }
  });
}

template <class T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, T a) {
  switch (op) {
// clang-format off
#define LR_CASE(name) \
  case UnaryOp::name: return unary_loop<T, UnaryOp::name>(x, out, a);
    LR_CASE(Neg) LR_CASE(Exp) LR_CASE(Log) LR_CASE(Sqrt) LR_CASE(Rsqrt) LR_CASE(Tanh) LR_CASE(Sigmoid)
    LR_CASE(Relu) LR_CASE(Gelu) LR_CASE(Abs) LR_CASE(Sign) LR_CASE(AddScalar) LR_CASE(MulScalar)
    LR_CASE(PowScalar) LR_CASE(RSubScalar) LR_CASE(RDivScalar)
#undef LR_CASE
    // clang-format on
  }
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, T a) {
  switch (op) {
// clang-format off
#define LR_CASE(name) \
  case BinaryOp::name: return binary_loop<T, BinaryOp::name>(x, y, out, a);
    LR_CASE(Add) LR_CASE(Sub) LR_CASE(Mul) LR_CASE(Div) LR_CASE(Pow) LR_CASE(Maximum) LR_CASE(Minimum)
    LR_CASE(Eq) LR_CASE(Ne) LR_CASE(Lt) LR_CASE(Le) LR_CASE(Gt) LR_CASE(Ge) LR_CASE(MaskedFill)
    LR_CASE(ReluBackward) LR_CASE(GeluBackward)
#undef LR_CASE
    // clang-format on
  }
}

template <class S, class D>
void copy_loop(const Tensor& src, const Tensor& dst) {
  const S* ps = static_cast<const S*>(src.raw_data());
  D* pd = static_cast<D*>(dst.raw_data());
  auto L = make_loop<2>(dst.shape(), {&src.strides(), &dst.strides()});
  for_each_row(L, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    const S* si = ps + off[0];
    D* di = pd + off[1];
    if constexpr (std::is_same_v<S, D>) {
      if (st[0] == 1 && st[1] == 1) {
        std::memcpy(di, si, static_cast<size_t>(n) * sizeof(D));
        return;
      }
    }
    for (int64_t i = 0; i < n; ++i) di[i * st[1]] = static_cast<D>(si[i * st[0]]);
  });
}

template <class F>
void visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32:
      return f(float{});
    case DType::F64:
      return f(double{});
    case DType::I64:
      return f(int64_t{});
    case DType::I32:
      return f(int32_t{});
    case DType::U8:
      return f(uint8_t{});
    default:
      LR_FAIL("CPU kernels do not handle dtype {}", dtype_name(t));
  }
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) {
  if (x.dtype() == DType::F32)
    unary_typed<float>(op, x, out, static_cast<float>(alpha));
  else
    unary_typed<double>(op, x, out, alpha);
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  if (a.dtype() == DType::F32)
    binary_typed<float>(op, a, b, out, static_cast<float>(alpha));
  else if (a.dtype() == DType::F64)
    binary_typed<double>(op, a, b, out, alpha);
  else
    LR_FAIL("elementwise {}: needs f32 or f64, got {}", static_cast<int>(op), dtype_name(a.dtype()));
}

void copy(const Tensor& src, const Tensor& dst) {
  visit_dtype(src.dtype(), [&](auto s) {
    visit_dtype(dst.dtype(), [&](auto d) { copy_loop<decltype(s), decltype(d)>(src, dst); });
  });
}

void fill(const Tensor& dst, double value) {
  visit_dtype(dst.dtype(), [&](auto d) {
    using D = decltype(d);
    D v = static_cast<D>(value);
    D* pd = static_cast<D*>(dst.raw_data());
    auto L = make_loop<1>(dst.shape(), {&dst.strides()});
    for_each_row(L, [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
      for (int64_t i = 0; i < n; ++i) pd[off[0] + i * st[0]] = v;
    });
  });
}

}  // namespace lowrank::cpu
