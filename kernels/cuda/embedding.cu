// CUDA embedding gather (out-of-range ids raise a device flag the launcher reads back) and its
// scatter-add backward with atomicAdd. CPU twin: kernels/cpu/embedding.cpp.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

// ---- kernels

// out [n, d] contiguous; weight rows/cols by strides; ids contiguous. Bad ids write zeros.
template <class T>
__global__ void embedding_kernel(const T* weight, int64_t w_row, int64_t w_col, int64_t vocab, const int64_t* ids,
                                 T* out, int64_t n, int64_t d, int* bad) {
  for (int64_t i = global_thread(); i < n * d; i += grid_stride()) {
    const int64_t row = i / d, col = i - row * d;
    const int64_t id = ids[row];
    if (id < 0 || id >= vocab) {
      *bad = 1;
      out[i] = 0;
    } else {
      out[i] = weight[id * w_row + col * w_col];
    }
  }
}

// grad_weight [vocab, d] contiguous (zeroed by the caller) += grad rows at ids; repeated ids
// make the atomics collide, which only costs time.
template <class T>
__global__ void embedding_backward_kernel(const T* grad, int64_t g_row, int64_t g_col, const int64_t* ids, T* gw,
                                          int64_t vocab, int64_t n, int64_t d) {
  for (int64_t i = global_thread(); i < n * d; i += grid_stride()) {
    const int64_t row = i / d, col = i - row * d;
    const int64_t id = ids[row];
    if (id >= 0 && id < vocab) atomicAdd(gw + id * d + col, grad[row * g_row + col * g_col]);
  }
}

}  // namespace

// ---- launchers

bool embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  const int64_t n = ids.numel(), d = weight.size(1), vocab = weight.size(0);
  if (n == 0 || d == 0) return true;
  const int dev = out.device().index;
  cudaStream_t s = stream(out.device());
  Tensor flag = Tensor::empty({1}, DType::I32, out.device());
  int* pflag = static_cast<int*>(flag.raw_data());
  CUDA_CHECK(cudaMemsetAsync(pflag, 0, sizeof(int), s));
  visit_float(weight.dtype(), [&](auto t) {
    using T = decltype(t);
    embedding_kernel<T><<<grid_for(n * d, dev), kThreads, 0, s>>>(
        static_cast<const T*>(weight.raw_data()), weight.strides()[0], weight.strides()[1], vocab,
        static_cast<const int64_t*>(ids.raw_data()), static_cast<T*>(out.raw_data()), n, d, pflag);
    CUDA_CHECK_LAUNCH();
  });
  int bad = 0;
  CUDA_CHECK(cudaMemcpyAsync(&bad, pflag, sizeof(int), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  return bad == 0;
}

void embedding_backward(const Tensor& grad, const Tensor& ids, const Tensor& grad_weight) {
  const int64_t n = ids.numel(), d = grad_weight.size(1), vocab = grad_weight.size(0);
  if (n == 0 || d == 0) return;
  const int dev = grad_weight.device().index;
  cudaStream_t s = stream(grad_weight.device());
  const int64_t g_row = grad.dim() == 2 ? grad.strides()[0] : d, g_col = grad.dim() == 2 ? grad.strides()[1] : 1;
  visit_float(grad_weight.dtype(), [&](auto t) {
    using T = decltype(t);
    embedding_backward_kernel<T><<<grid_for(n * d, dev), kThreads, 0, s>>>(
        static_cast<const T*>(grad.raw_data()), g_row, g_col, static_cast<const int64_t*>(ids.raw_data()),
        static_cast<T*>(grad_weight.raw_data()), vocab, n, d);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
