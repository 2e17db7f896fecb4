// Shared pieces of the CUDA kernel files: the strided indexer passed to kernels by value, its
// host-side coalescing, launch sizing, warp/block reductions and the dtype switch.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/cuda/cuda_context.h"
#include "core/dispatch.h"

namespace lowrank::cuda {

// Axes left after coalescing that one launch handles; more are split on the host (rare: it
// needs nine axes that no two neighbours of can merge).
constexpr int kMaxDims = 8;
constexpr int kThreads = 256;

// Sizes and per-operand strides (in elements) of a coalesced loop, innermost axis first.
template <int N>
struct Indexer {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  // Element offsets of the row-major linear index `i`; I is uint32_t when the loop is small
  // enough, because 64-bit division costs several times more on the GPU.
  template <class I>
  __device__ __forceinline__ void offsets(I i, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim) break;
      const I size = static_cast<I>(sizes[d]);
      const I q = i / size;
      const int64_t idx = static_cast<int64_t>(i - q * size);
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
  }
};

// A coalesced loop on the host: outermost axis first.
template <int N>
struct Loop {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, N> strides;
};

// Merges neighbouring axes that are contiguous with each other in every operand and drops
// size-1 axes (the same rule as kernels/cpu/strided.h).
template <int N>
Loop<N> coalesce(const Shape& shape, const std::array<const Strides*, N>& strides) {
  Loop<N> L;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!L.shape.empty()) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (L.strides[k].back() != (*strides[k])[d] * shape[d]) merge = false;
      if (merge) {
        L.shape.back() *= shape[d];
        for (int k = 0; k < N; ++k) L.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    L.shape.push_back(shape[d]);
    for (int k = 0; k < N; ++k) L.strides[k].push_back((*strides[k])[d]);
  }
  return L;
}

// Calls launch(indexer, base_offsets) for the loop: once when it has at most kMaxDims axes,
// else once per index of its leading axes (base_offsets in elements, per operand).
template <int N, class F>
void for_each_piece(const Loop<N>& L, F&& launch, size_t first = 0, std::array<int64_t, N> base = {}) {
  const size_t nd = L.shape.size() - first;
  if (nd <= static_cast<size_t>(kMaxDims)) {
    Indexer<N> ix;
    ix.ndim = static_cast<int>(nd);
    for (size_t j = 0; j < nd; ++j) {
      const size_t d = L.shape.size() - 1 - j;  // innermost first
      ix.sizes[j] = L.shape[d];
      for (int k = 0; k < N; ++k) ix.strides[k][j] = L.strides[k][d];
    }
    launch(ix, base);
    return;
  }
  for (int64_t i = 0; i < L.shape[first]; ++i) {
    std::array<int64_t, N> b = base;
    for (int k = 0; k < N; ++k) b[k] += i * L.strides[k][first];
    for_each_piece<N>(L, launch, first + 1, b);
  }
}

template <int N>
int64_t indexer_numel(const Indexer<N>& ix) {
  int64_t n = 1;
  for (int d = 0; d < ix.ndim; ++d) n *= ix.sizes[d];
  return n;
}

// True when every operand walks memory with unit stride (a 1-D loop with strides 1).
template <int N>
bool indexer_contiguous(const Indexer<N>& ix) {
  if (ix.ndim == 0) return true;
  if (ix.ndim != 1) return false;
  for (int k = 0; k < N; ++k)
    if (ix.strides[k][0] != 1) return false;
  return true;
}

// Blocks for a grid-stride loop over n elements: enough to fill the device, no more.
inline unsigned grid_for(int64_t n, int device, int threads = kThreads) {
  const int64_t want = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count(device)) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---- reductions inside a warp / a block (T: float, double, or any type with shuffles)

struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};
// Max that keeps NaN, like the CPU loops (`v > acc || v != v`).
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return (b > a || b != b) ? b : a;
  }
};

template <class T, class Op>
__device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// All-reduce over the threads of a row: a warp when blockDim.x == 32 (then no block barrier is
// used, so rows of one block may finish independently), else the whole block (blockDim.y == 1,
// blockDim.x a multiple of 32). `smem` holds 32 values of T.
template <class T, class Op>
__device__ __forceinline__ T row_allreduce(T v, Op op, T identity, T* smem) {
  v = warp_allreduce(v, op);
  if (blockDim.x == 32) return v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();  // an earlier call may still be reading smem
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < nwarps ? smem[lane] : identity;
  return warp_allreduce(v, op);
}

// Threads per row for row-wise kernels: a warp for short rows (several rows per block), a
// block for long ones.
inline unsigned row_threads(int64_t cols) {
  if (cols <= 1024) return 32;
  if (cols <= 8192) return 256;
  return 512;
}

// Calls f(T{}) for the dtype (f32/f64 only for floating kernels).
template <class F>
void visit_float(DType t, F&& f) {
  switch (t) {
    case DType::F32:
      return f(float{});
    case DType::F64:
      return f(double{});
    default:
      LR_FAIL("CUDA kernels need f32 or f64, got {}", dtype_name(t));
  }
}

template <class F>
void visit_all(DType t, F&& f) {
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
      LR_FAIL("CUDA kernels do not handle dtype {}", dtype_name(t));
  }
}

}  // namespace lowrank::cuda
