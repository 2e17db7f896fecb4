// CUDA fused attention, forward and backward, in the [B, T, H, D] layout (CPU twin:
// kernels/cpu/attention.cpp). Flash-attention style: a warp owns one row (a query row forward
// and for dq, a key row for dk/dv), the other side streams through shared memory 32 rows at a
// time, lane j takes row j of the tile, the softmax is online, and only the row log-sum-exp is
// saved. No atomics: dq and dk/dv are separate kernels, so results are deterministic. The dropout
// mask is Philox(seed, offset) over [B, H, Tq, Tk], bit-for-bit the CPU's.
#include <math_constants.h>

#include <cmath>
#include <type_traits>

#include "core/rng.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

constexpr int kTile = 32;     // rows of the streamed side per step: one per lane
constexpr int kMaxWarps = 8;  // owned rows per block
constexpr int kMaxHeadDim = 256;

template <class T>
struct Params {
  const T *q, *k, *v;  // strided [B, T, H, D], unit stride on D
  int64_t qsb, qst, qsh, ksb, kst, ksh, vsb, vst, vsh;
  const T *o, *go, *lse, *delta;  // contiguous [B, Tq, H, D] and [B, H, Tq]
  T *out, *lse_out, *delta_out, *gq, *gk, *gv;
  int64_t B, H, Tq, Tk, D, off;  // off = Tk - Tq
  bool causal;
  T scale;
  bool dropout;
  uint32_t thr;  // keep when the 24-bit lane >= thr
  T keep_scale;  // 1 / (1 - p)
  uint64_t seed, offset;
};

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

// Dropout factor of probability (bh, i, j): the CPU's dropout_row test, one element.
template <class T>
__device__ __forceinline__ T drop_factor(const Params<T>& p, int64_t bh, int64_t i, int64_t j) {
  const uint64_t e = static_cast<uint64_t>((bh * p.Tq + i) * p.Tk + j);
  const Philox4 r = philox4x32_10(p.offset + e / 4, p.seed);
  const unsigned lane = static_cast<unsigned>(e & 3u);
  const uint32_t x = lane == 0 ? r.v[0] : lane == 1 ? r.v[1] : lane == 2 ? r.v[2] : r.v[3];
  return (x >> 8) >= p.thr ? p.keep_scale : T(0);
}

// Keys query row i sees: [0, visible_end(i)).
template <class T>
__device__ __forceinline__ int64_t visible_end(const Params<T>& p, int64_t i) {
  return p.causal ? imin(p.Tk, i + p.off + 1) : p.Tk;
}

// Copies rows [r0, r0 + kTile) of a strided [T, D] operand into dst (row pitch `pitch`), zeros
// past `rows`; scaled by `mul`.
template <class T>
__device__ __forceinline__ void load_tile(T* dst, int pitch, const T* src, int64_t row_stride, int64_t r0, int64_t rows,
                                          int64_t D, T mul = T(1)) {
  for (int64_t idx = threadIdx.x; idx < kTile * D; idx += blockDim.x) {
    const int64_t rr = idx / D, d = idx - rr * D, r = r0 + rr;
    dst[rr * pitch + d] = r < rows ? src[r * row_stride + d] * mul : T(0);
  }
}

// ---- kernels

// grid (B·H, ceil(Tq / warps)), block 32·warps. Dynamic shared memory: k tile [32][D+1] (padded:
// lane j reads row j), v tile [32][D], q rows [warps][D].
template <class T, int C>
__global__ void attention_forward_kernel(const Params<T> p) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = p.D;
  T* ks = reinterpret_cast<T*>(smem_raw);
  T* vs = ks + kTile * (D + 1);
  T* qs = vs + kTile * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int64_t i_first = static_cast<int64_t>(blockIdx.y) * nw, i = i_first + warp;
  const bool row_ok = i < p.Tq;
  const T* qb = p.q + b * p.qsb + h * p.qsh;
  const T* kb = p.k + b * p.ksb + h * p.ksh;
  const T* vb = p.v + b * p.vsb + h * p.vsh;
  T* qrow = qs + warp * D;
  for (int64_t d = lane; d < D; d += 32) qrow[d] = row_ok ? qb[i * p.qst + d] * p.scale : T(0);
  const int64_t i_last = imin(p.Tq - 1, i_first + nw - 1);
  const int64_t k_end = p.causal ? imin(p.Tk, i_last + p.off + 1) : p.Tk;  // the block's keys
  const int64_t my_end = row_ok ? visible_end(p, i) : 0;
  T m = -CUDART_INF, l = 0, o[C];
#pragma unroll
  for (int c = 0; c < C; ++c) o[c] = 0;
  for (int64_t j0 = 0; j0 < k_end; j0 += kTile) {
    __syncthreads();  // the previous tile is consumed
    load_tile(ks, static_cast<int>(D + 1), kb, p.kst, j0, p.Tk, D);
    load_tile(vs, static_cast<int>(D), vb, p.vst, j0, p.Tk, D);
    __syncthreads();
    if (!row_ok || j0 >= my_end) continue;  // uniform over the warp
    const int64_t j = j0 + lane;
    const bool vis = j < my_end;
    T s = -CUDART_INF;
    if (vis) {
      T acc = 0;
      const T* kr = ks + lane * (D + 1);
      for (int64_t d = 0; d < D; ++d) acc += qrow[d] * kr[d];
      s = acc;
    }
    const T mt = warp_allreduce(s, MaxOp{}), m_new = mt > m ? mt : m;  // lane 0 is visible: finite
    const T pj = vis ? exp(s - m_new) : T(0), alpha = exp(m - m_new);
    l = l * alpha + warp_allreduce(pj, SumOp{});
    const T pd = p.dropout && vis ? pj * drop_factor(p, bh, i, j) : pj;
#pragma unroll
    for (int c = 0; c < C; ++c) o[c] *= alpha;
    for (int jj = 0; jj < kTile; ++jj) {
      const T w = __shfl_sync(0xffffffffu, pd, jj);
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) o[c] += w * vs[jj * D + d];
      }
    }
    m = m_new;
  }
  if (!row_ok) return;
  T* orow = p.out + ((b * p.Tq + i) * p.H + h) * D;
  const T inv = T(1) / l;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) orow[d] = o[c] * inv;
  }
  if (lane == 0) p.lse_out[bh * p.Tq + i] = m + log(l);
}

// delta[b, h, i] = gout_i · out_i (= sum_j P_ij dP_ij, dropout included). One warp per row.
template <class T>
__global__ void attention_delta_kernel(const Params<T> p) {
  const int64_t rows = p.B * p.H * p.Tq, D = p.D;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = global_thread() >> 5; r < rows; r += warps) {
    const int64_t bh = r / p.Tq, i = r - bh * p.Tq, b = bh / p.H, h = bh - b * p.H;
    const int64_t base = ((b * p.Tq + i) * p.H + h) * D;
    T acc = 0;
    for (int64_t d = lane; d < D; d += 32) acc += p.go[base + d] * p.o[base + d];
    acc = warp_allreduce(acc, SumOp{});
    if (lane == 0) p.delta_out[r] = acc;
  }
}

// dq: the forward's shape. Shared: k tile [32][D+1], v tile [32][D+1], q rows and gout rows
// [warps][D].
template <class T, int C>
__global__ void attention_dq_kernel(const Params<T> p) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = p.D;
  T* ks = reinterpret_cast<T*>(smem_raw);
  T* vs = ks + kTile * (D + 1);
  T* qs = vs + kTile * (D + 1);
  T* gs = qs + (blockDim.x >> 5) * D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int64_t i_first = static_cast<int64_t>(blockIdx.y) * nw, i = i_first + warp;
  const bool row_ok = i < p.Tq;
  const T* qb = p.q + b * p.qsb + h * p.qsh;
  const T* kb = p.k + b * p.ksb + h * p.ksh;
  const T* vb = p.v + b * p.vsb + h * p.vsh;
  const int64_t orow = ((b * p.Tq + i) * p.H + h) * D;  // contiguous [B, Tq, H, D] row
  T* qrow = qs + warp * D;
  T* grow = gs + warp * D;
  for (int64_t d = lane; d < D; d += 32) {
    qrow[d] = row_ok ? qb[i * p.qst + d] * p.scale : T(0);
    grow[d] = row_ok ? p.go[orow + d] : T(0);
  }
  const T lse_i = row_ok ? p.lse[bh * p.Tq + i] : T(0), delta_i = row_ok ? p.delta[bh * p.Tq + i] : T(0);
  const int64_t i_last = imin(p.Tq - 1, i_first + nw - 1);
  const int64_t k_end = p.causal ? imin(p.Tk, i_last + p.off + 1) : p.Tk;
  const int64_t my_end = row_ok ? visible_end(p, i) : 0;
  T acc[C];
#pragma unroll
  for (int c = 0; c < C; ++c) acc[c] = 0;
  for (int64_t j0 = 0; j0 < k_end; j0 += kTile) {
    __syncthreads();
    load_tile(ks, static_cast<int>(D + 1), kb, p.kst, j0, p.Tk, D);
    load_tile(vs, static_cast<int>(D + 1), vb, p.vst, j0, p.Tk, D);
    __syncthreads();
    if (!row_ok || j0 >= my_end) continue;
    const int64_t j = j0 + lane;
    T ds = 0;
    if (j < my_end) {
      T s = 0, dp = 0;
      const T* kr = ks + lane * (D + 1);
      const T* vr = vs + lane * (D + 1);
      for (int64_t d = 0; d < D; ++d) {
        s += qrow[d] * kr[d];
        dp += grow[d] * vr[d];
      }
      if (p.dropout) dp *= drop_factor(p, bh, i, j);
      ds = exp(s - lse_i) * (dp - delta_i);
    }
    for (int jj = 0; jj < kTile; ++jj) {
      const T w = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) acc[c] += w * ks[jj * (D + 1) + d];
      }
    }
  }
  if (!row_ok) return;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) p.gq[orow + d] = acc[c] * p.scale;
  }
}

// dk, dv: a warp owns key row j; query tiles stream past. grid (B·H, ceil(Tk / warps)). Shared:
// q tile (times scale) and gout tile [32][D+1], lse and delta [32], the warps' k and v rows [warps][D].
template <class T, int C>
__global__ void attention_dkv_kernel(const Params<T> p) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = p.D;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  T* qt = reinterpret_cast<T*>(smem_raw);
  T* gt = qt + kTile * (D + 1);
  T* lt = gt + kTile * (D + 1);
  T* dt = lt + kTile;
  T* kown = dt + kTile;
  T* vown = kown + nw * D;
  const int64_t bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int64_t j_first = static_cast<int64_t>(blockIdx.y) * nw, j = j_first + warp;
  const bool row_ok = j < p.Tk;
  const T* qb = p.q + b * p.qsb + h * p.qsh;
  const T* kb = p.k + b * p.ksb + h * p.ksh;
  const T* vb = p.v + b * p.vsb + h * p.vsh;
  const T* gb = p.go + (b * p.Tq * p.H + h) * D;  // row stride H·D
  T* krow = kown + warp * D;
  T* vrow = vown + warp * D;
  for (int64_t d = lane; d < D; d += 32) {
    krow[d] = row_ok ? kb[j * p.kst + d] : T(0);
    vrow[d] = row_ok ? vb[j * p.vst + d] : T(0);
  }
  // Queries that see key j: i >= j - off when causal.
  const int64_t i_begin = p.causal ? imax(0, j_first - p.off) : 0;
  const int64_t my_begin = p.causal ? imax(0, j - p.off) : 0;
  T dk[C], dv[C];
#pragma unroll
  for (int c = 0; c < C; ++c) dk[c] = dv[c] = 0;
  for (int64_t i0 = i_begin; i0 < p.Tq; i0 += kTile) {
    __syncthreads();
    load_tile(qt, static_cast<int>(D + 1), qb, p.qst, i0, p.Tq, D, p.scale);  // scaled, as forward
    load_tile(gt, static_cast<int>(D + 1), gb, p.H * D, i0, p.Tq, D);
    if (threadIdx.x < kTile) {
      const int64_t i = i0 + threadIdx.x;
      lt[threadIdx.x] = i < p.Tq ? p.lse[bh * p.Tq + i] : T(0);
      dt[threadIdx.x] = i < p.Tq ? p.delta[bh * p.Tq + i] : T(0);
    }
    __syncthreads();
    if (!row_ok || i0 + kTile <= my_begin) continue;  // uniform over the warp
    const int64_t i = i0 + lane;
    T pd = 0, ds = 0;
    if (i < p.Tq && i >= my_begin) {
      T s = 0, dp = 0;
      const T* qr = qt + lane * (D + 1);
      const T* gr = gt + lane * (D + 1);
      for (int64_t d = 0; d < D; ++d) {
        s += qr[d] * krow[d];
        dp += gr[d] * vrow[d];
      }
      const T pr = exp(s - lt[lane]);
      const T f = p.dropout ? drop_factor(p, bh, i, j) : T(1);
      pd = pr * f;
      ds = pr * (dp * f - dt[lane]);
    }
    for (int ii = 0; ii < kTile; ++ii) {
      const T wv = __shfl_sync(0xffffffffu, pd, ii), wk = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) {
          dv[c] += wv * gt[ii * (D + 1) + d];
          dk[c] += wk * qt[ii * (D + 1) + d];
        }
      }
    }
  }
  if (!row_ok) return;
  const int64_t base = ((b * p.Tk + j) * p.H + h) * D;  // gk, gv contiguous [B, Tk, H, D]
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) {
      if (p.gk) p.gk[base + d] = dk[c];  // qt holds scale·q
      if (p.gv) p.gv[base + d] = dv[c];
    }
  }
}

// ---- launchers

template <class T>
Params<T> make_params(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v) {
  Params<T> p{};
  p.q = static_cast<const T*>(q.raw_data());
  p.k = static_cast<const T*>(k.raw_data());
  p.v = static_cast<const T*>(v.raw_data());
  p.qsb = q.strides()[0], p.qst = q.strides()[1], p.qsh = q.strides()[2];
  p.ksb = k.strides()[0], p.kst = k.strides()[1], p.ksh = k.strides()[2];
  p.vsb = v.strides()[0], p.vst = v.strides()[1], p.vsh = v.strides()[2];
  p.B = a.batch, p.H = a.heads, p.Tq = a.tq, p.Tk = a.tk, p.D = a.head_dim, p.off = a.tk - a.tq;
  p.causal = a.causal;
  p.scale = static_cast<T>(a.scale);
  p.dropout = a.dropout_p > 0;
  p.thr = static_cast<uint32_t>(std::ceil(a.dropout_p * 16777216.0));
  p.keep_scale = static_cast<T>(1.0 / (1.0 - a.dropout_p));
  p.seed = a.seed, p.offset = a.offset;
  return p;
}

// Calls f(std::integral_constant<int, C>{}) with C = the head_dim chunks of 32 (1, 2, 4 or 8).
template <class F>
void visit_chunks(int64_t D, F&& f) {
  LR_CHECK(D <= kMaxHeadDim, "attention: the CUDA kernels take head_dim <= {}, got {}", kMaxHeadDim, D);
  if (D <= 32) return f(std::integral_constant<int, 1>{});
  if (D <= 64) return f(std::integral_constant<int, 2>{});
  if (D <= 128) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, 8>{});
}

template <class Kernel>
void launch(Kernel kernel, dim3 grid, int warps, size_t smem, cudaStream_t st, const auto& params) {
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<grid, static_cast<unsigned>(32 * warps), smem, st>>>(params);
  CUDA_CHECK(cudaGetLastError());
}

// x: the (batch, head) pairs, y: the owned-row blocks (y allows 65535 blocks of 8 rows).
dim3 grid_of(const AttentionArgs& a, int64_t rows, int warps) {
  const int64_t blocks = (rows + warps - 1) / warps;
  LR_CHECK(blocks <= 65535, "attention: {} positions exceed the CUDA kernels' grid ({} at most)", rows,
           int64_t{65535} * warps);
  return dim3(static_cast<unsigned>(a.batch * a.heads), static_cast<unsigned>(blocks));
}

int warps_for(int64_t rows) {
  return static_cast<int>(std::min<int64_t>(kMaxWarps, std::max<int64_t>(1, rows)));
}

}  // namespace

void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       const Tensor& lse) {
  const Device d = q.device();
  cudaStream_t st = stream(d);
  visit_float(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Params<T> p = make_params<T>(a, q, k, v);
    p.out = static_cast<T*>(out.raw_data());
    p.lse_out = static_cast<T*>(lse.raw_data());
    const int w = warps_for(a.tq);
    const size_t smem = sizeof(T) * static_cast<size_t>(kTile * (a.head_dim + 1) + kTile * a.head_dim + w * a.head_dim);
    const dim3 grid = grid_of(a, a.tq, w);
    visit_chunks(a.head_dim,
                 [&](auto c) { launch(attention_forward_kernel<T, decltype(c)::value>, grid, w, smem, st, p); });
  });
}

void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const Device d = q.device();
  cudaStream_t st = stream(d);
  visit_float(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Params<T> p = make_params<T>(a, q, k, v);
    p.o = static_cast<const T*>(out.raw_data());
    p.go = static_cast<const T*>(gout.raw_data());
    p.lse = static_cast<const T*>(lse.raw_data());
    Tensor delta = Tensor::empty({a.batch, a.heads, a.tq}, q.dtype(), d);
    p.delta_out = static_cast<T*>(delta.raw_data());
    p.delta = p.delta_out;
    p.gq = gq.defined() ? static_cast<T*>(gq.raw_data()) : nullptr;
    p.gk = gk.defined() ? static_cast<T*>(gk.raw_data()) : nullptr;
    p.gv = gv.defined() ? static_cast<T*>(gv.raw_data()) : nullptr;
    const int64_t D = a.head_dim, rows = a.batch * a.heads * a.tq;
    attention_delta_kernel<T><<<grid_for(rows * 32, d.index), kThreads, 0, st>>>(p);
    CUDA_CHECK(cudaGetLastError());
    visit_chunks(D, [&](auto c) {
      constexpr int C = decltype(c)::value;
      if (p.gq) {
        const int w = warps_for(a.tq);
        const size_t smem = sizeof(T) * static_cast<size_t>(2 * kTile * (D + 1) + 2 * w * D);
        const dim3 grid = grid_of(a, a.tq, w);
        launch(attention_dq_kernel<T, C>, grid, w, smem, st, p);
      }
      if (p.gk || p.gv) {
        const int w = warps_for(a.tk);
        const size_t smem = sizeof(T) * static_cast<size_t>(2 * kTile * (D + 1) + 2 * kTile + 2 * w * D);
        const dim3 grid = grid_of(a, a.tk, w);
        launch(attention_dkv_kernel<T, C>, grid, w, smem, st, p);
      }
    });
  });
}

}  // namespace lowrank::cuda
