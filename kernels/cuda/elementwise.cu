// CUDA elementwise kernels: unary, binary (inputs pre-broadcast with stride-0 axes), copy with
// dtype casts, fill; any strides. CPU twin: kernels/cpu/elementwise.cpp; the per-element
// formulas of both are kernels/scalar_math.h.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/scalar_math.h"

namespace lowrank::cuda {
namespace {

// ---- kernels

// `contig`: every operand has unit stride (plain indexing); `small`: n < 2^32, so the strided
// path divides in 32 bits.
template <class T, UnaryOp Op>
__global__ void unary_kernel(Indexer<2> ix, const T* x, T* out, int64_t n, T a, bool contig, bool small) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (contig) {
      out[i] = scalar::apply_unary<T, Op>(x[i], a);
    } else {
      int64_t off[2];
      if (small)
        ix.offsets(static_cast<uint32_t>(i), off);
      else
        ix.offsets(static_cast<uint64_t>(i), off);
      out[off[1]] = scalar::apply_unary<T, Op>(x[off[0]], a);
    }
  }
}

template <class T, BinaryOp Op>
__global__ void binary_kernel(Indexer<3> ix, const T* x, const T* y, T* out, int64_t n, T a, bool contig, bool small) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (contig) {
      out[i] = scalar::apply_binary<T, Op>(x[i], y[i], a);
    } else {
      int64_t off[3];
      if (small)
        ix.offsets(static_cast<uint32_t>(i), off);
      else
        ix.offsets(static_cast<uint64_t>(i), off);
      out[off[2]] = scalar::apply_binary<T, Op>(x[off[0]], y[off[1]], a);
    }
  }
}

template <class S, class D>
__global__ void copy_kernel(Indexer<2> ix, const S* src, D* dst, int64_t n, bool contig, bool small) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (contig) {
      dst[i] = static_cast<D>(src[i]);
    } else {
      int64_t off[2];
      if (small)
        ix.offsets(static_cast<uint32_t>(i), off);
      else
        ix.offsets(static_cast<uint64_t>(i), off);
      dst[off[1]] = static_cast<D>(src[off[0]]);
    }
  }
}

template <class D>
__global__ void fill_kernel(Indexer<1> ix, D* dst, int64_t n, D v, bool contig, bool small) {
  for (int64_t i = global_thread(); i < n; i += grid_stride()) {
    if (contig) {
      dst[i] = v;
    } else {
      int64_t off[1];
      if (small)
        ix.offsets(static_cast<uint32_t>(i), off);
      else
        ix.offsets(static_cast<uint64_t>(i), off);
      dst[off[0]] = v;
    }
  }
}

// ---- launchers

constexpr int64_t kSmall = int64_t{1} << 32;

template <class T, UnaryOp Op>
void unary_cuda(const Tensor& x, const Tensor& out, T a, cudaStream_t stream) {
  const int dev = out.device().index;
  auto L = coalesce<2>(out.shape(), {&x.strides(), &out.strides()});
  for_each_piece<2>(L, [&](const Indexer<2>& ix, const std::array<int64_t, 2>& base) {
    const int64_t n = indexer_numel(ix);
    unary_kernel<T, Op><<<grid_for(n, dev), kThreads, 0, stream>>>(ix, static_cast<const T*>(x.raw_data()) + base[0],
                                                                   static_cast<T*>(out.raw_data()) + base[1], n, a,
                                                                   indexer_contiguous(ix), n < kSmall);
    CUDA_CHECK_LAUNCH();
  });
}

template <class T, BinaryOp Op>
void binary_cuda(const Tensor& x, const Tensor& y, const Tensor& out, T a, cudaStream_t stream) {
  const int dev = out.device().index;
  auto L = coalesce<3>(out.shape(), {&x.strides(), &y.strides(), &out.strides()});
  for_each_piece<3>(L, [&](const Indexer<3>& ix, const std::array<int64_t, 3>& base) {
    const int64_t n = indexer_numel(ix);
    binary_kernel<T, Op><<<grid_for(n, dev), kThreads, 0, stream>>>(
        ix, static_cast<const T*>(x.raw_data()) + base[0], static_cast<const T*>(y.raw_data()) + base[1],
        static_cast<T*>(out.raw_data()) + base[2], n, a, indexer_contiguous(ix), n < kSmall);
    CUDA_CHECK_LAUNCH();
  });
}

template <class T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out, T a, cudaStream_t s) {
  switch (op) {
// clang-format off
#define LR_CASE(name) \
  case UnaryOp::name: \
    return unary_cuda<T, UnaryOp::name>(x, out, a, s);
    LR_CASE(Neg)
    LR_CASE(Exp) LR_CASE(Log) LR_CASE(Sqrt) LR_CASE(Rsqrt) LR_CASE(Tanh) LR_CASE(Sigmoid) LR_CASE(Relu) LR_CASE(Gelu)
        LR_CASE(Abs) LR_CASE(Sign) LR_CASE(AddScalar) LR_CASE(MulScalar) LR_CASE(PowScalar) LR_CASE(RSubScalar)
            LR_CASE(RDivScalar)
#undef LR_CASE
    // clang-format on
  }
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out, T a, cudaStream_t s) {
  switch (op) {
// clang-format off
#define LR_CASE(name)  \
  case BinaryOp::name: \
    return binary_cuda<T, BinaryOp::name>(x, y, out, a, s);
    LR_CASE(Add)
    LR_CASE(Sub) LR_CASE(Mul) LR_CASE(Div) LR_CASE(Pow) LR_CASE(Maximum) LR_CASE(Minimum) LR_CASE(Eq) LR_CASE(Ne)
        LR_CASE(Lt) LR_CASE(Le) LR_CASE(Gt) LR_CASE(Ge) LR_CASE(MaskedFill) LR_CASE(ReluBackward) LR_CASE(GeluBackward)
#undef LR_CASE
    // clang-format on
  }
}

}  // namespace

void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) {
  if (out.numel() == 0) return;
  cudaStream_t s = stream(out.device());
  if (x.dtype() == DType::F32)
    unary_typed<float>(op, x, out, static_cast<float>(alpha), s);
  else if (x.dtype() == DType::F64)
    unary_typed<double>(op, x, out, alpha, s);
  else
    LR_FAIL("elementwise: CUDA kernels need f32 or f64, got {}", dtype_name(x.dtype()));
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) {
  if (out.numel() == 0) return;
  cudaStream_t s = stream(out.device());
  if (a.dtype() == DType::F32)
    binary_typed<float>(op, a, b, out, static_cast<float>(alpha), s);
  else if (a.dtype() == DType::F64)
    binary_typed<double>(op, a, b, out, alpha, s);
  else
    LR_FAIL("elementwise: CUDA kernels need f32 or f64, got {}", dtype_name(a.dtype()));
}

void copy(const Tensor& src, const Tensor& dst) {
  if (dst.numel() == 0) return;
  const int dev = dst.device().index;
  cudaStream_t s = stream(dst.device());
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  auto L = coalesce<2>(dst.shape(), {&src.strides(), &dst.strides()});
  visit_all(src.dtype(), [&](auto sv) {
    visit_all(dst.dtype(), [&](auto dv) {
      using S = decltype(sv);
      using D = decltype(dv);
      for_each_piece<2>(L, [&](const Indexer<2>& ix, const std::array<int64_t, 2>& base) {
        const int64_t n = indexer_numel(ix);
        copy_kernel<S, D><<<grid_for(n, dev), kThreads, 0, s>>>(ix, static_cast<const S*>(src.raw_data()) + base[0],
                                                                static_cast<D*>(dst.raw_data()) + base[1], n,
                                                                indexer_contiguous(ix), n < kSmall);
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  const int dev = dst.device().index;
  cudaStream_t s = stream(dst.device());
  if (value == 0.0 && !std::signbit(value) && dst.is_contiguous()) {  // all-zero bytes in every dtype
    CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), 0, dst.nbytes(), s));
    return;
  }
  auto L = coalesce<1>(dst.shape(), {&dst.strides()});
  visit_all(dst.dtype(), [&](auto dv) {
    using D = decltype(dv);
    const D v = static_cast<D>(value);
    for_each_piece<1>(L, [&](const Indexer<1>& ix, const std::array<int64_t, 1>& base) {
      const int64_t n = indexer_numel(ix);
      fill_kernel<D><<<grid_for(n, dev), kThreads, 0, s>>>(ix, static_cast<D*>(dst.raw_data()) + base[0], n, v,
                                                           indexer_contiguous(ix), n < kSmall);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace lowrank::cuda
