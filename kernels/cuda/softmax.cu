// CUDA softmax / log_softmax over the last axis of contiguous [rows, cols] and their backward,
// and the fused softmax-cross-entropy with integer labels (+ backward). A warp handles a short
// row (8 rows per block), a block a long one; sums accumulate in f64 as in the CPU twins
// (kernels/cpu/softmax.cpp, kernels/cpu/cross_entropy.cpp).
#include <math_constants.h>

#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

// Launch shape for row-wise kernels: blockDim (threads per row, rows per block).
struct RowLaunch {
  dim3 grid, block;
};

RowLaunch row_launch(int64_t rows, int64_t cols) {
  const unsigned tx = row_threads(cols);
  const unsigned ty = tx == 32 ? 8 : 1;
  const int64_t blocks = (rows + ty - 1) / ty;
  return {dim3(static_cast<unsigned>(std::min<int64_t>(blocks, int64_t{1} << 30))), dim3(tx, ty)};
}

// Row of this thread group, striding over the grid. A warp row group uses no block barrier; when
// blockDim.x > 32 (blockDim.y == 1) the whole block shares the row, so every thread reaches the
// barriers inside row_allreduce.
__device__ __forceinline__ int64_t first_row() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
}
__device__ __forceinline__ int64_t row_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.y;
}

template <class T>
__device__ __forceinline__ T row_max(const T* xr, int64_t cols, double* smem) {
  T mx = -CUDART_INF;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) mx = MaxOp{}(mx, xr[j]);
  return static_cast<T>(row_allreduce(static_cast<double>(mx), MaxOp{}, -CUDART_INF, smem));
}

// ---- kernels

template <class T, bool Log>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  __shared__ double smem[32];
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T mx = row_max(xr, cols, smem);
    double s = 0;
    if constexpr (Log) {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += std::exp(static_cast<double>(xr[j] - mx));
      s = row_allreduce(s, SumOp{}, 0.0, smem);
      const T lse = static_cast<T>(std::log(s)) + mx;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - lse;
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        const T e = std::exp(xr[j] - mx);
        yr[j] = e;
        s += e;
      }
      s = row_allreduce(s, SumOp{}, 0.0, smem);
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] *= inv;
    }
  }
}

template <class T, bool Log>
__global__ void softmax_backward_kernel(const T* y, const T* gy, T* gx, int64_t rows, int64_t cols) {
  __shared__ double smem[32];
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const T* yr = y + r * cols;
    const T* gr = gy + r * cols;
    T* xr = gx + r * cols;
    double s = 0;
    if constexpr (Log) {  // y = log p: gx = gy - p * sum(gy)
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += gr[j];
      const T st = static_cast<T>(row_allreduce(s, SumOp{}, 0.0, smem));
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) xr[j] = gr[j] - std::exp(yr[j]) * st;
    } else {  // gx = y * (gy - <gy, y>)
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += static_cast<double>(gr[j]) * yr[j];
      const T st = static_cast<T>(row_allreduce(s, SumOp{}, 0.0, smem));
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) xr[j] = yr[j] * (gr[j] - st);
    }
  }
}

// loss = logsumexp(row) - row[label]; 0 where ignored. A label outside [0, cols) that is not
// the ignore index (the op rejects those) gives NaN rather than reading out of bounds.
template <class T>
__global__ void cross_entropy_kernel(const T* logits, const int64_t* labels, int64_t label_st, int64_t ignore_index,
                                     T* losses, T* lse_out, int64_t rows, int64_t cols) {
  __shared__ double smem[32];
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t label = labels[r * label_st];
    if (label == ignore_index) {  // uniform over the row group: it skips the reductions together
      if (threadIdx.x == 0) losses[r] = lse_out[r] = 0;
      continue;
    }
    const T* xr = logits + r * cols;
    const T mx = row_max(xr, cols, smem);
    double s = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += std::exp(static_cast<double>(xr[j] - mx));
    s = row_allreduce(s, SumOp{}, 0.0, smem);
    if (threadIdx.x == 0) {
      const double lse = std::log(s) + static_cast<double>(mx);
      lse_out[r] = static_cast<T>(lse);
      losses[r] = label >= 0 && label < cols ? static_cast<T>(lse - static_cast<double>(xr[label]))
                                             : static_cast<T>(CUDART_NAN);
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* labels, int64_t label_st,
                                              int64_t ignore_index, const T* lse_in, const T* grad_losses,
                                              int64_t grad_st, T* grad_logits, int64_t rows, int64_t cols) {
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t label = labels[r * label_st];
    T* gr = grad_logits + r * cols;
    if (label == ignore_index) {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) gr[j] = 0;
      continue;
    }
    const T* xr = logits + r * cols;
    const double lse = static_cast<double>(lse_in[r]);  // forward's
    const double g = static_cast<double>(grad_losses[r * grad_st]);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const double p = std::exp(static_cast<double>(xr[j]) - lse);
      gr[j] = static_cast<T>((p - (j == label ? 1.0 : 0.0)) * g);
    }
  }
}

// Stride of a 1-D per-row tensor (labels, per-row gradients): a broadcast gradient has stride 0.
int64_t vector_stride(const Tensor& t) {
  return t.dim() == 0 ? 0 : t.strides()[0];
}

}  // namespace

// ---- launchers

void softmax(const Tensor& x, const Tensor& y, bool log) {
  const int64_t rows = x.size(0), cols = x.size(1);
  if (rows == 0 || cols == 0) return;
  cudaStream_t s = stream(x.device());
  const RowLaunch L = row_launch(rows, cols);
  visit_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = static_cast<const T*>(x.raw_data());
    T* py = static_cast<T*>(y.raw_data());
    if (log)
      softmax_kernel<T, true><<<L.grid, L.block, 0, s>>>(px, py, rows, cols);
    else
      softmax_kernel<T, false><<<L.grid, L.block, 0, s>>>(px, py, rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) {
  const int64_t rows = y.size(0), cols = y.size(1);
  if (rows == 0 || cols == 0) return;
  cudaStream_t s = stream(y.device());
  const RowLaunch L = row_launch(rows, cols);
  visit_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* py = static_cast<const T*>(y.raw_data());
    const T* pg = static_cast<const T*>(gy.raw_data());
    T* pgx = static_cast<T*>(gx.raw_data());
    if (log)
      softmax_backward_kernel<T, true><<<L.grid, L.block, 0, s>>>(py, pg, pgx, rows, cols);
    else
      softmax_backward_kernel<T, false><<<L.grid, L.block, 0, s>>>(py, pg, pgx, rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses,
                   const Tensor& lse) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0) return;
  cudaStream_t s = stream(logits.device());
  const RowLaunch L = row_launch(rows, cols);
  visit_float(logits.dtype(), [&](auto t) {
    using T = decltype(t);
    cross_entropy_kernel<T><<<L.grid, L.block, 0, s>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(labels.raw_data()), vector_stride(labels),
        ignore_index, static_cast<T*>(losses.raw_data()), static_cast<T*>(lse.raw_data()), rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

void cross_entropy_backward(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad_losses, const Tensor& grad_logits) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (rows == 0 || cols == 0) return;
  cudaStream_t s = stream(logits.device());
  const RowLaunch L = row_launch(rows, cols);
  visit_float(logits.dtype(), [&](auto t) {
    using T = decltype(t);
    cross_entropy_backward_kernel<T><<<L.grid, L.block, 0, s>>>(
        static_cast<const T*>(logits.raw_data()), static_cast<const int64_t*>(labels.raw_data()), vector_stride(labels),
        ignore_index, static_cast<const T*>(lse.raw_data()), static_cast<const T*>(grad_losses.raw_data()),
        vector_stride(grad_losses), static_cast<T*>(grad_logits.raw_data()), rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
