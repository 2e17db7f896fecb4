// CUDA fused LoRA matmul, forward and backward, as handwritten shared-memory tiled GEMMs (cuBLAS
// serves only as the baseline in bench/). CPU twin: kernels/cpu/lora_matmul.cpp.
//
// One kernel computes C = Σ_s alpha_s · A_s B_s (+ bias) over up to two K segments with any
// operand strides, so y = base_scale·x Wᵀ + scale·(x Aᵀ) Bᵀ + b is a single pass over the
// output (the rank-r product is a short second K segment), and each backward product is one
// launch. Tiles: a 16x16 thread grid, each thread owning TM x TN outputs spaced 16 apart (so
// shared-memory reads are conflict-free and global stores coalesce); few tiles split K over
// blocks into partials summed by a second kernel.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank::cuda {
namespace {

constexpr int kTileThreads = 256;  // 16 x 16

// Element (i, j) at p[i * s0 + j * s1].
template <class T>
struct Operand {
  const T* p = nullptr;
  int64_t s0 = 0, s1 = 0;
};

// alpha · A [M, k] · B [k, N]; k == 0 leaves the segment out.
template <class T>
struct Segment {
  Operand<T> a, b;
  int64_t k = 0;
  T alpha = 0;
};

// ---- kernels

// Accumulates alpha · A[:, kb:ke] B[kb:ke, :] of one segment into the thread's outputs.
template <class T, int TM, int TN, int BK>
__device__ __forceinline__ void gemm_segment(const Segment<T>& s, int64_t kb, int64_t ke, int64_t m0, int64_t n0,
                                             int64_t M, int64_t N, T (&As)[BK][16 * TM + 1], T (&Bs)[BK][16 * TN + 1],
                                             T (&acc)[TM][TN]) {
  constexpr int BM = 16 * TM, BN = 16 * TN;
  constexpr int LA = BM * BK / kTileThreads, LB = BN * BK / kTileThreads;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  // Neighbouring threads load along whichever axis is contiguous in memory.
  const bool a_k_fast = s.a.s1 == 1, b_n_fast = s.b.s1 == 1;
  for (int64_t k0 = kb; k0 < ke; k0 += BK) {
#pragma unroll
    for (int l = 0; l < LA; ++l) {
      const int t = tid + l * kTileThreads;
      const int kk = a_k_fast ? t % BK : t / BM;
      const int mm = a_k_fast ? t / BK : t % BM;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      As[kk][mm] = (gm < M && gk < ke) ? s.a.p[gm * s.a.s0 + gk * s.a.s1] * s.alpha : T(0);
    }
#pragma unroll
    for (int l = 0; l < LB; ++l) {
      const int t = tid + l * kTileThreads;
      const int nn = b_n_fast ? t % BN : t / BK;
      const int kk = b_n_fast ? t / BN : t % BK;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      Bs[kk][nn] = (gn < N && gk < ke) ? s.b.p[gk * s.b.s0 + gn * s.b.s1] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T ra[TM], rb[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) ra[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < TN; ++j) rb[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += ra[i] * rb[j];
    }
    __syncthreads();
  }
}

// C [M, N] row-major (ldc). Block (blockIdx.x, blockIdx.y) owns a BM x BN tile; blockIdx.z is
// the K split: it covers [z·k_chunk, (z+1)·k_chunk) of the two segments laid end to end and
// writes its partial tile at c + z·split_stride. bias (per column) only when unsplit.
template <class T, int TM, int TN, int BK>
__global__ void __launch_bounds__(kTileThreads)
    lora_gemm_kernel(Segment<T> s1, Segment<T> s2, const T* bias, T* c, int64_t ldc, int64_t M, int64_t N,
                     int64_t k_chunk, int64_t split_stride) {
  __shared__ T As[BK][16 * TM + 1];
  __shared__ T Bs[BK][16 * TN + 1];
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * 16 * TM, n0 = static_cast<int64_t>(blockIdx.y) * 16 * TN;
  const int64_t kb = static_cast<int64_t>(blockIdx.z) * k_chunk, ke = kb + k_chunk;
  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
  // Segment 1 owns [0, s1.k), segment 2 [s1.k, s1.k + s2.k) of the joint K range.
  gemm_segment<T, TM, TN, BK>(s1, max(kb, int64_t{0}), min(ke, s1.k), m0, n0, M, N, As, Bs, acc);
  gemm_segment<T, TM, TN, BK>(s2, max(kb - s1.k, int64_t{0}), min(ke - s1.k, s2.k), m0, n0, M, N, As, Bs, acc);
  T* out = c + blockIdx.z * split_stride;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t gm = m0 + ty + 16 * i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t gn = n0 + tx + 16 * j;
      if (gn < N) out[gm * ldc + gn] = bias ? acc[i][j] + bias[gn] : acc[i][j];
    }
  }
}

// c[m, n] = Σ_z partial[z, m, n] (+ bias[n]).
template <class T>
__global__ void split_sum_kernel(const T* partial, int splits, const T* bias, T* c, int64_t ldc, int64_t M, int64_t N) {
  const int64_t mn = M * N;
  for (int64_t i = global_thread(); i < mn; i += grid_stride()) {
    T v = bias ? bias[i % N] : T(0);
    for (int z = 0; z < splits; ++z) v += partial[z * mn + i];
    c[(i / N) * ldc + i % N] = v;
  }
}

// ---- launchers

template <class T, int TM, int TN, int BK>
void launch_tiles(const Segment<T>& s1, const Segment<T>& s2, const T* bias, T* c, int64_t M, int64_t N, Device d,
                  cudaStream_t st) {
  constexpr int BM = 16 * TM, BN = 16 * TN;
  const int64_t tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN, k_total = s1.k + s2.k;
  LR_CHECK(tiles_n <= 65535, "lora_linear: {} output columns exceed the CUDA grid", N);
  const int64_t sms = sm_count(d.index), tiles = tiles_m * tiles_n;
  // Too few tiles to fill the device and a long K: split K over blocks.
  int64_t splits = 1;
  if (tiles < sms && k_total >= 512) splits = std::min<int64_t>({(2 * sms + tiles - 1) / tiles, k_total / 256, 32});
  const int64_t k_chunk = std::max<int64_t>(BK, (k_total + splits - 1) / splits + BK - 1) / BK * BK;
  splits = std::max<int64_t>(1, (k_total + k_chunk - 1) / k_chunk);
  const dim3 grid(static_cast<unsigned>(tiles_m), static_cast<unsigned>(tiles_n), static_cast<unsigned>(splits));
  if (splits == 1) {
    lora_gemm_kernel<T, TM, TN, BK><<<grid, kTileThreads, 0, st>>>(s1, s2, bias, c, N, M, N, k_chunk, 0);
    CUDA_CHECK_LAUNCH();
    return;
  }
  Tensor partial = Tensor::empty({splits, M, N}, dtype_of<T>(), d);
  T* pp = static_cast<T*>(partial.raw_data());
  lora_gemm_kernel<T, TM, TN, BK><<<grid, kTileThreads, 0, st>>>(s1, s2, nullptr, pp, N, M, N, k_chunk, M * N);
  CUDA_CHECK_LAUNCH();
  split_sum_kernel<T><<<grid_for(M * N, d.index), kThreads, 0, st>>>(pp, static_cast<int>(splits), bias, c, N, M, N);
  CUDA_CHECK_LAUNCH();
}

// C [M, N] (contiguous) = s1 + s2 (+ bias), with the tile shape picked for the output's shape.
template <class T>
void tiled_gemm(Segment<T> s1, Segment<T> s2, const T* bias, T* c, int64_t M, int64_t N, Device d, cudaStream_t st) {
  if (M == 0 || N == 0) return;
  if (s1.alpha == T(0)) s1.k = 0;  // as BLAS with alpha = 0: the product is skipped
  if (s2.alpha == T(0)) s2.k = 0;
  const int64_t sms = sm_count(d.index);
  if (N <= 16 && M > 16)
    launch_tiles<T, 4, 1, 16>(s1, s2, bias, c, M, N, d, st);  // 64 x 16: rank-wide outputs
  else if (M <= 16 && N > 16)
    launch_tiles<T, 1, 4, 16>(s1, s2, bias, c, M, N, d, st);  // 16 x 64
  else if (((M + 127) / 128) * ((N + 127) / 128) >= sms)
    launch_tiles<T, 8, 8, 8>(s1, s2, bias, c, M, N, d, st);
  else
    launch_tiles<T, 4, 4, 16>(s1, s2, bias, c, M, N, d, st);
}

template <class T>
const T* cptr(const Tensor& t) {
  return static_cast<const T*>(t.raw_data());
}
template <class T>
T* mptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

template <class T>
void forward_typed(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                   double base_scale, const Tensor& y, const Tensor& xa) {
  const int64_t m = x.size(0), in = x.size(1), out = w.size(0), r = a.size(0);
  const Device d = x.device();
  cudaStream_t st = stream(d);
  const Segment<T> none{};
  // xa = x Aᵀ: B(k, n) = A[n, k].
  tiled_gemm<T>({{cptr<T>(x), in, 1}, {cptr<T>(a), 1, in}, in, T(1)}, none, nullptr, mptr<T>(xa), m, r, d, st);
  // y = base_scale · x Wᵀ + scale · xa Bᵀ + b
  tiled_gemm<T>({{cptr<T>(x), in, 1}, {cptr<T>(w), 1, in}, in, static_cast<T>(base_scale)},
                {{cptr<T>(xa), r, 1}, {cptr<T>(bm), 1, r}, r, static_cast<T>(scale)},
                b.defined() ? cptr<T>(b) : nullptr, mptr<T>(y), m, out, d, st);
}

template <class T>
void backward_typed(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                    const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                    const Tensor& gb, const Tensor& ga, const Tensor& gbm) {
  const int64_t m = x.size(0), in = x.size(1), out = w.size(0), r = a.size(0);
  const Device d = x.device();
  cudaStream_t st = stream(d);
  const Segment<T> none{};
  const T s = static_cast<T>(scale), s0 = static_cast<T>(base_scale);
  // gyb = gy B [m, r]: the one r-wide temporary of the backward pass.
  Tensor gyb;
  if (gx.defined() || ga.defined()) {
    gyb = Tensor::empty({m, r}, x.dtype(), d);
    tiled_gemm<T>({{cptr<T>(gy), out, 1}, {cptr<T>(bm), r, 1}, out, T(1)}, none, nullptr, mptr<T>(gyb), m, r, d, st);
  }
  if (gx.defined())  // gx = base_scale · gy W + scale · gyb A
    tiled_gemm<T>({{cptr<T>(gy), out, 1}, {cptr<T>(w), in, 1}, out, s0},
                  {{cptr<T>(gyb), r, 1}, {cptr<T>(a), in, 1}, r, s}, nullptr, mptr<T>(gx), m, in, d, st);
  if (ga.defined())  // gA = scale · gybᵀ x: A(i, k) = gyb[k, i]
    tiled_gemm<T>({{cptr<T>(gyb), 1, r}, {cptr<T>(x), in, 1}, m, s}, none, nullptr, mptr<T>(ga), r, in, d, st);
  if (gbm.defined())  // gB = scale · gyᵀ xa
    tiled_gemm<T>({{cptr<T>(gy), 1, out}, {cptr<T>(xa), r, 1}, m, s}, none, nullptr, mptr<T>(gbm), out, r, d, st);
  if (gw.defined())  // gW = base_scale · gyᵀ x
    tiled_gemm<T>({{cptr<T>(gy), 1, out}, {cptr<T>(x), in, 1}, m, s0}, none, nullptr, mptr<T>(gw), out, in, d, st);
  if (gb.defined()) {  // gb = column sums of gy, through the reduction kernels
    const Tensor gb_row = Tensor::view_of(gb.storage(), {1, out}, {out, 1}, gb.offset(), gb.dtype());
    const Tensor gy_2d = Tensor::view_of(gy.storage(), {m, out}, {out, 1}, gy.offset(), gy.dtype());
    reduce(ReduceOp::Sum, gy_2d, gb_row, 1);
  }
}

}  // namespace

void lora_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                  double base_scale, const Tensor& y, const Tensor& xa) {
  if (x.dtype() == DType::F32)
    forward_typed<float>(x, w, b, a, bm, scale, base_scale, y, xa);
  else
    forward_typed<double>(x, w, b, a, bm, scale, base_scale, y, xa);
}

void lora_backward(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                   const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                   const Tensor& gb, const Tensor& ga, const Tensor& gbm) {
  if (x.dtype() == DType::F32)
    backward_typed<float>(x, w, a, bm, xa, gy, scale, base_scale, gx, gw, gb, ga, gbm);
  else
    backward_typed<double>(x, w, a, bm, xa, gy, scale, base_scale, gx, gw, gb, ga, gbm);
}

}  // namespace lowrank::cuda
