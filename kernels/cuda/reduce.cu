// CUDA reductions: sum / max over any set of axes (accumulated in f64, like the CPU twin), and
// argmax along one axis. CPU twin: kernels/cpu/reduce.cpp.
//
// The kept axes and the reduced axes are coalesced separately. When the reduced elements of an
// output lie next to each other in memory, a block (or warp) reduces one output ("rows");
// otherwise the threads of a warp take neighbouring outputs and walk the reduced axes together
// ("columns", e.g. the bias gradient: a sum over rows). Long reductions with few outputs are
// split over several blocks into f64 partials, then reduced once more.
#include <math_constants.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

constexpr int kColThreadsX = 32, kColThreadsY = 8;

template <bool IsMax>
__device__ __forceinline__ double combine(double acc, double v) {
  if constexpr (IsMax)
    return MaxOp{}(acc, v);
  else
    return acc + v;
}

template <bool IsMax>
__device__ __forceinline__ double identity() {
  return IsMax ? -CUDART_INF : 0.0;
}

// Offset of reduced element r of the output whose x offset is `base`.
__device__ __forceinline__ int64_t inner_offset(const Indexer<1>& inner, int64_t r, bool linear) {
  if (linear) return r * inner.strides[0][0];
  int64_t off[1];
  inner.offsets(static_cast<uint64_t>(r), off);
  return off[0];
}

// ---- kernels

// One block (blockDim.x threads, blockDim.y == 1) per output and split; out[o * splits + s].
template <class In, class Out, bool IsMax>
__global__ void reduce_rows_kernel(Indexer<1> outer, Indexer<1> inner, const In* x, Out* out, int64_t n_out,
                                   int64_t n_in, int64_t chunk, int splits, bool inner_linear) {
  __shared__ double smem[32];
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t end = min(n_in, begin + chunk);
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    int64_t base[1];
    outer.offsets(static_cast<uint64_t>(o), base);
    double acc = identity<IsMax>();
    for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x)
      acc = combine<IsMax>(acc, static_cast<double>(x[base[0] + inner_offset(inner, r, inner_linear)]));
    if constexpr (IsMax)
      acc = row_allreduce(acc, MaxOp{}, identity<IsMax>(), smem);
    else
      acc = row_allreduce(acc, SumOp{}, 0.0, smem);
    if (threadIdx.x == 0) out[o * splits + blockIdx.y] = static_cast<Out>(acc);
  }
}

// Block (32, 8): threadIdx.x picks the output, threadIdx.y strides the reduced elements of this
// split; out[s * n_out + o].
template <class In, class Out, bool IsMax>
__global__ void reduce_cols_kernel(Indexer<1> outer, Indexer<1> inner, const In* x, Out* out, int64_t n_out,
                                   int64_t n_in, int64_t chunk, bool inner_linear) {
  __shared__ double part[kColThreadsY][kColThreadsX + 1];
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kColThreadsX + threadIdx.x;
  double acc = identity<IsMax>();
  if (o < n_out) {
    int64_t base[1];
    outer.offsets(static_cast<uint64_t>(o), base);
    const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk;
    const int64_t end = min(n_in, begin + chunk);
    for (int64_t r = begin + threadIdx.y; r < end; r += kColThreadsY)
      acc = combine<IsMax>(acc, static_cast<double>(x[base[0] + inner_offset(inner, r, inner_linear)]));
  }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && o < n_out) {
    for (int j = 1; j < kColThreadsY; ++j) acc = combine<IsMax>(acc, part[j][threadIdx.x]);
    out[static_cast<int64_t>(blockIdx.y) * n_out + o] = static_cast<Out>(acc);
  }
}

// First index of the maximum along one axis; NaNs are skipped unless the first element is NaN,
// which is what the CPU loop (`v > best`, starting from element 0) returns.
template <class T>
__global__ void argmax_rows_kernel(Indexer<1> outer, const T* x, int64_t* out, int64_t n_out, int64_t n, int64_t st) {
  __shared__ double sv[32];
  __shared__ int64_t si[32];
  constexpr int64_t kNone = INT64_MAX;
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    int64_t base[1];
    outer.offsets(static_cast<uint64_t>(o), base);
    double bv = -CUDART_INF;
    int64_t bi = kNone;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const double v = static_cast<double>(x[base[0] + i * st]);
      if (v > bv || (v == bv && i < bi)) bv = v, bi = i;  // false for NaN
    }
    auto better = [](double v, int64_t i, double bv, int64_t bi) { return v > bv || (v == bv && i < bi); };
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const double v = __shfl_xor_sync(0xffffffffu, bv, off);
      const int64_t i = __shfl_xor_sync(0xffffffffu, bi, off);
      if (better(v, i, bv, bi)) bv = v, bi = i;
    }
    if (blockDim.x > 32) {
      const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
      __syncthreads();
      if (lane == 0) sv[warp] = bv, si[warp] = bi;
      __syncthreads();
      if (warp == 0) {
        bv = lane < static_cast<int>(blockDim.x >> 5) ? sv[lane] : -CUDART_INF;
        bi = lane < static_cast<int>(blockDim.x >> 5) ? si[lane] : kNone;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
          const double v = __shfl_xor_sync(0xffffffffu, bv, off);
          const int64_t i = __shfl_xor_sync(0xffffffffu, bi, off);
          if (better(v, i, bv, bi)) bv = v, bi = i;
        }
      }
    }
    if (threadIdx.x == 0) {
      const T first = x[base[0]];
      out[o] = (first != first || bi == kNone) ? 0 : bi;
    }
  }
}

// One thread per output: the CPU loop itself (strided axis or short rows).
template <class T>
__global__ void argmax_cols_kernel(Indexer<1> outer, const T* x, int64_t* out, int64_t n_out, int64_t n, int64_t st) {
  for (int64_t o = global_thread(); o < n_out; o += grid_stride()) {
    int64_t base[1];
    outer.offsets(static_cast<uint64_t>(o), base);
    const T* p = x + base[0];
    int64_t best = 0;
    T bv = p[0];
    for (int64_t i = 1; i < n; ++i) {
      const T v = p[i * st];
      if (v > bv) bv = v, best = i;
    }
    out[o] = best;
  }
}

// ---- launchers

Indexer<1> to_indexer(const Loop<1>& L) {
  Indexer<1> ix;
  ix.ndim = static_cast<int>(L.shape.size());
  for (int j = 0; j < ix.ndim; ++j) {
    ix.sizes[j] = L.shape[L.shape.size() - 1 - j];
    ix.strides[0][j] = L.strides[0][L.shape.size() - 1 - j];
  }
  return ix;
}

struct ReducePlan {
  Loop<1> outer, inner;
  int64_t n_out = 1, n_in = 1;
  bool fits = true;
};

ReducePlan plan_reduce(const Tensor& x, uint64_t mask) {
  Shape os, is;
  Strides ost, ist;
  std::vector<std::pair<int64_t, int64_t>> red;  // (stride, size)
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (mask & (1ull << i))
      red.push_back({x.strides()[i], x.shape()[i]});
    else
      os.push_back(x.shape()[i]), ost.push_back(x.strides()[i]);
  }
  // The order of the reduced axes is free: largest stride outermost lets more of them merge
  // and puts the unit stride innermost.
  std::stable_sort(red.begin(), red.end(), [](auto a, auto b) { return a.first > b.first; });
  for (auto [st, sz] : red) is.push_back(sz), ist.push_back(st);
  ReducePlan p;
  p.outer = coalesce<1>(os, {&ost});
  p.inner = coalesce<1>(is, {&ist});
  p.n_out = shape_numel(os);
  p.n_in = shape_numel(is);
  p.fits = p.outer.shape.size() <= kMaxDims && p.inner.shape.size() <= kMaxDims;
  return p;
}

template <class In, class Out, bool IsMax>
void launch_rows(const Indexer<1>& outer, const Indexer<1>& inner, const In* x, Out* out, int64_t n_out, int64_t n_in,
                 int splits, bool linear, cudaStream_t s) {
  const int64_t chunk = (n_in + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(n_out, 1 << 30)), static_cast<unsigned>(splits));
  reduce_rows_kernel<In, Out, IsMax>
      <<<grid, row_threads(std::min(n_in, chunk)), 0, s>>>(outer, inner, x, out, n_out, n_in, chunk, splits, linear);
  CUDA_CHECK_LAUNCH();
}

template <class In, class Out, bool IsMax>
void launch_cols(const Indexer<1>& outer, const Indexer<1>& inner, const In* x, Out* out, int64_t n_out, int64_t n_in,
                 int splits, bool linear, cudaStream_t s) {
  const int64_t chunk = (n_in + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>((n_out + kColThreadsX - 1) / kColThreadsX), static_cast<unsigned>(splits));
  reduce_cols_kernel<In, Out, IsMax>
      <<<grid, dim3(kColThreadsX, kColThreadsY), 0, s>>>(outer, inner, x, out, n_out, n_in, chunk, linear);
  CUDA_CHECK_LAUNCH();
}

template <class T, bool IsMax>
void reduce_cuda(const Tensor& x, const Tensor& out, const ReducePlan& p, cudaStream_t s) {
  const int dev = x.device().index;
  const int64_t sms = sm_count(dev);
  const Indexer<1> outer = to_indexer(p.outer), inner = to_indexer(p.inner);
  const bool linear = inner.ndim <= 1;
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  const int64_t inner_st = inner.ndim == 0 ? 1 : inner.strides[0][0];
  const int64_t outer_st = outer.ndim == 0 ? 0 : outer.strides[0][0];
  // Columns when the outputs, not the reduced elements, are the unit-stride direction, or when
  // each output reduces too few elements to keep a warp busy.
  const bool cols = (inner_st != 1 && outer_st == 1) || (p.n_in < 32 && p.n_out > 1);
  int splits = 1;
  if (cols) {
    const int64_t bx = (p.n_out + kColThreadsX - 1) / kColThreadsX;
    if (bx < 2 * sms && p.n_in >= 1024)
      splits = static_cast<int>(std::min<int64_t>({(p.n_in + 255) / 256, (4 * sms + bx - 1) / bx, 1024}));
  } else if (p.n_out < 2 * sms && p.n_in >= (1 << 15)) {
    splits = static_cast<int>(std::min<int64_t>({(p.n_in + 4095) / 4096, (4 * sms + p.n_out - 1) / p.n_out, 1024}));
  }
  if (splits == 1) {
    if (cols)
      launch_cols<T, T, IsMax>(outer, inner, px, po, p.n_out, p.n_in, 1, linear, s);
    else
      launch_rows<T, T, IsMax>(outer, inner, px, po, p.n_out, p.n_in, 1, linear, s);
    return;
  }
  // f64 partials, then one more pass over them.
  Tensor partial = Tensor::empty({p.n_out * splits}, DType::F64, x.device());
  double* pp = static_cast<double*>(partial.raw_data());
  Indexer<1> o2, i2;
  o2.ndim = i2.ndim = 1;
  o2.sizes[0] = p.n_out;
  i2.sizes[0] = splits;
  if (cols) {  // partial is [splits, n_out]
    launch_cols<T, double, IsMax>(outer, inner, px, pp, p.n_out, p.n_in, splits, linear, s);
    o2.strides[0][0] = 1;
    i2.strides[0][0] = p.n_out;
    launch_cols<double, T, IsMax>(o2, i2, pp, po, p.n_out, splits, 1, true, s);
  } else {  // partial is [n_out, splits]
    launch_rows<T, double, IsMax>(outer, inner, px, pp, p.n_out, p.n_in, splits, linear, s);
    o2.strides[0][0] = splits;
    i2.strides[0][0] = 1;
    launch_rows<double, T, IsMax>(o2, i2, pp, po, p.n_out, splits, 1, true, s);
  }
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t axes_mask) {
  if (out.numel() == 0) return;
  cudaStream_t s = stream(x.device());
  ReducePlan p = plan_reduce(x, axes_mask);
  Tensor xs = x;
  if (!p.fits) {  // many interleaved axes: a contiguous copy coalesces into fewer
    xs = Tensor::empty(x.shape(), x.dtype(), x.device());
    copy(x, xs);
    p = plan_reduce(xs, axes_mask);
    LR_CHECK(p.fits, "reduce: CUDA kernels handle at most {} alternating kept/reduced axes, got shape {}", kMaxDims,
             x.shape());
  }
  if (p.n_in == 0) {  // an empty sum is 0 (the op rejects an empty max)
    fill(out, 0.0);
    return;
  }
  visit_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    if (op == ReduceOp::Max)
      reduce_cuda<T, true>(xs, out, p, s);
    else
      reduce_cuda<T, false>(xs, out, p, s);
  });
}

void argmax(const Tensor& x, const Tensor& out, int axis) {
  if (out.numel() == 0) return;
  const int dev = x.device().index;
  cudaStream_t s = stream(x.device());
  Shape os;
  Strides ost;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != axis) os.push_back(x.shape()[i]), ost.push_back(x.strides()[i]);
  Loop<1> L = coalesce<1>(os, {&ost});
  Tensor xs = x;
  if (L.shape.size() > static_cast<size_t>(kMaxDims)) {
    xs = Tensor::empty(x.shape(), x.dtype(), x.device());
    copy(x, xs);
    ost.clear();
    for (int64_t i = 0; i < xs.dim(); ++i)
      if (i != axis) ost.push_back(xs.strides()[i]);
    L = coalesce<1>(os, {&ost});
  }
  const Indexer<1> outer = to_indexer(L);
  const int64_t n_out = shape_numel(os), n = x.shape()[axis], st = xs.strides()[axis];
  int64_t* po = static_cast<int64_t*>(out.raw_data());
  visit_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = static_cast<const T*>(xs.raw_data());
    if (st == 1 && n >= 32) {
      const unsigned grid = static_cast<unsigned>(std::min<int64_t>(n_out, 1 << 30));
      argmax_rows_kernel<T><<<grid, row_threads(n), 0, s>>>(outer, px, po, n_out, n, st);
    } else {
      argmax_cols_kernel<T><<<grid_for(n_out, dev), kThreads, 0, s>>>(outer, px, po, n_out, n, st);
    }
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace lowrank::cuda
