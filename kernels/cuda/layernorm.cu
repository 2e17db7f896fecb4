// CUDA layer norm over the last axis of contiguous [rows, D], and its backward: gx row by row,
// gw/gb as column sums over rows (split over blocks into f64 partials when rows are many), so
// no atomics and the same result on every run. CPU twin: kernels/cpu/layernorm.cpp.
#include <cmath>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

constexpr int kColX = 32, kColY = 8;

__device__ __forceinline__ int64_t first_row() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
}
__device__ __forceinline__ int64_t row_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.y;
}

// ---- kernels

// w, b may be null (weight 1, bias 0; the op passes both today). Two passes over the row for the variance: exact enough
// for rows with a large mean, unlike E[x^2] - E[x]^2.
template <class T>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, double eps, T* y, T* mean, T* rstd, int64_t rows,
                                  int64_t d) {
  __shared__ double smem[32];
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double s = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) s += static_cast<double>(xr[j]);
    const double mu = row_allreduce(s, SumOp{}, 0.0, smem) / static_cast<double>(d);
    double q = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double c = static_cast<double>(xr[j]) - mu;
      q += c * c;
    }
    const double var = row_allreduce(q, SumOp{}, 0.0, smem) / static_cast<double>(d);
    const double rs = 1.0 / std::sqrt(var + eps);
    // The normalisation itself in T with T's mean and rstd, rounded as the CPU twin rounds.
    const T mu_t = static_cast<T>(mu), rs_t = static_cast<T>(rs);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      T v = (xr[j] - mu_t) * rs_t;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
    if (threadIdx.x == 0) {
      mean[r] = mu_t;
      rstd[r] = rs_t;
    }
  }
}

// gx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gy * w.
template <class T>
__global__ void layer_norm_backward_kernel(const T* x, const T* w, const T* mean, const T* rstd, const T* gy, T* gx,
                                           int64_t rows, int64_t d) {
  __shared__ double smem[32];
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const T* xr = x + r * d;
    const T* gr = gy + r * d;
    T* out = gx + r * d;
    const double mu = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
    double s1 = 0, s2 = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double g = static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0);
      s1 += g;
      s2 += g * (static_cast<double>(xr[j]) - mu) * rs;
    }
    s1 = row_allreduce(s1, SumOp{}, 0.0, smem) / static_cast<double>(d);
    s2 = row_allreduce(s2, SumOp{}, 0.0, smem) / static_cast<double>(d);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const double g = static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0);
      const double xhat = (static_cast<double>(x[r * d + j]) - mu) * rs;
      out[j] = static_cast<T>(rs * (g - s1 - xhat * s2));
    }
  }
}

// Block (32, 8) over 32 columns and the rows of split blockIdx.y: sums of gy * xhat and gy.
// With one split the results go straight to gw/gb (either may be null), else to f64 partials
// pw/pb [splits, d].
template <class T>
__global__ void layer_norm_param_grad_kernel(const T* x, const T* mean, const T* rstd, const T* gy, T* gw, T* gb,
                                             double* pw, double* pb, int64_t rows, int64_t d, int64_t chunk) {
  __shared__ double sw[kColY][kColX + 1], sb[kColY][kColX + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColX + threadIdx.x;
  double aw = 0, ab = 0;
  if (j < d) {
    const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk, end = min(rows, begin + chunk);
    for (int64_t r = begin + threadIdx.y; r < end; r += kColY) {
      const double g = static_cast<double>(gy[r * d + j]);
      aw += g * (static_cast<double>(x[r * d + j]) - static_cast<double>(mean[r])) * static_cast<double>(rstd[r]);
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y != 0 || j >= d) return;
  for (int k = 1; k < kColY; ++k) aw += sw[k][threadIdx.x], ab += sb[k][threadIdx.x];
  if (pw) {
    pw[blockIdx.y * d + j] = aw;
    pb[blockIdx.y * d + j] = ab;
  } else {
    if (gw) gw[j] = static_cast<T>(aw);
    if (gb) gb[j] = static_cast<T>(ab);
  }
}

template <class T>
__global__ void layer_norm_param_finish_kernel(const double* pw, const double* pb, T* gw, T* gb, int64_t d,
                                               int splits) {
  for (int64_t j = global_thread(); j < d; j += grid_stride()) {
    double aw = 0, ab = 0;
    for (int s = 0; s < splits; ++s) aw += pw[s * d + j], ab += pb[s * d + j];
    if (gw) gw[j] = static_cast<T>(aw);
    if (gb) gb[j] = static_cast<T>(ab);
  }
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

dim3 row_grid(int64_t rows, const dim3& block) {
  return dim3(static_cast<unsigned>(std::min<int64_t>((rows + block.y - 1) / block.y, int64_t{1} << 30)));
}
dim3 row_block(int64_t d) {
  const unsigned tx = row_threads(d);
  return dim3(tx, tx == 32 ? 8 : 1);
}

}  // namespace

// ---- launchers

void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd) {
  const int64_t rows = x.size(0), d = x.size(1);
  if (rows == 0 || d == 0) return;
  cudaStream_t s = stream(x.device());
  const dim3 block = row_block(d), grid = row_grid(rows, block);
  visit_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    layer_norm_kernel<T><<<grid, block, 0, s>>>(
        static_cast<const T*>(x.raw_data()), ptr_or_null<T>(w), ptr_or_null<T>(b), eps, static_cast<T*>(y.raw_data()),
        static_cast<T*>(mean.raw_data()), static_cast<T*>(rstd.raw_data()), rows, d);
    CUDA_CHECK_LAUNCH();
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  const int64_t rows = x.size(0), d = x.size(1);
  if (d == 0) return;
  const int dev = x.device().index;
  cudaStream_t s = stream(x.device());
  visit_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pm = static_cast<const T*>(mean.raw_data());
    const T* pr = static_cast<const T*>(rstd.raw_data());
    const T* pg = static_cast<const T*>(gy.raw_data());
    if (gx.defined() && rows > 0) {
      const dim3 block = row_block(d), grid = row_grid(rows, block);
      layer_norm_backward_kernel<T>
          <<<grid, block, 0, s>>>(px, ptr_or_null<T>(w), pm, pr, pg, static_cast<T*>(gx.raw_data()), rows, d);
      CUDA_CHECK_LAUNCH();
    }
    if (!gw.defined() && !gb.defined()) return;
    // Split the rows when the columns alone leave most multiprocessors idle.
    const int64_t bx = (d + kColX - 1) / kColX, sms = sm_count(dev);
    int splits = 1;
    if (bx < 2 * sms && rows >= 512)
      splits = static_cast<int>(std::min<int64_t>({(rows + 127) / 128, (4 * sms + bx - 1) / bx, 1024}));
    const int64_t chunk = std::max<int64_t>(1, (rows + splits - 1) / splits);
    const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(splits)), block(kColX, kColY);
    T* pgw = mut_ptr_or_null<T>(gw);
    T* pgb = mut_ptr_or_null<T>(gb);
    if (splits == 1) {
      layer_norm_param_grad_kernel<T>
          <<<grid, block, 0, s>>>(px, pm, pr, pg, pgw, pgb, nullptr, nullptr, rows, d, chunk);
      CUDA_CHECK_LAUNCH();
      return;
    }
    Tensor partial = Tensor::empty({2, splits, d}, DType::F64, x.device());
    double* pw = static_cast<double*>(partial.raw_data());
    double* pb = pw + splits * d;
    layer_norm_param_grad_kernel<T><<<grid, block, 0, s>>>(px, pm, pr, pg, pgw, pgb, pw, pb, rows, d, chunk);
    CUDA_CHECK_LAUNCH();
    layer_norm_param_finish_kernel<T><<<grid_for(d, dev), kThreads, 0, s>>>(pw, pb, pgw, pgb, d, splits);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
