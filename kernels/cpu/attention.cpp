// CPU fused attention, forward and backward, straight in the [B, T, H, D] layout: per (batch, head)
// a block of query rows at a time, OpenBLAS GEMMs with the row stride as leading dimension (no
// permute copies), the masked upper triangle never computed, and only the row log-sum-exp kept for
// backward, which rebuilds the probabilities. The oracle of kernels/cuda/attention.cu.
// Keeping the probabilities instead was measured (bench/attention_bench.cpp, one thread) 7-10%
// faster for forward + backward at T 256 and 1024, but it holds B·H·Tq·Tk values per layer until
// backward: 8 MiB a layer for the small GPT-2 preset, 384 MiB a layer (4.5 GiB in all) for GPT-2
// 124M at 8 x 1024. The log-sum-exp costs B·H·Tq.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/blas.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace lowrank::cpu {
namespace {

// Query rows per block: the block's scores [rows, keys] stay in L2, and causal blocks stop at
// their last row's keys, so at most half a block's square is wasted on masked scores.
constexpr int64_t kRowBlock = 64;
// Below this many multiply-adds in all (4·B·H·Tq·Tk·D) the heads run on the calling thread.
constexpr int64_t kParallelMinFlops = int64_t{1} << 22;

// One head's operands: base pointers at (b, h) and the time-axis (row) strides in elements.
template <class T>
struct Head {
  const T *q, *k, *v;
  int64_t ldq, ldk, ldv;
};

template <class T>
Head<T> head_of(const Tensor& q, const Tensor& k, const Tensor& v, int64_t b, int64_t h) {
  const T* pq = static_cast<const T*>(q.raw_data());
  const T* pk = static_cast<const T*>(k.raw_data());
  const T* pv = static_cast<const T*>(v.raw_data());
  return {pq + b * q.strides()[0] + h * q.strides()[2],
          pk + b * k.strides()[0] + h * k.strides()[2],
          pv + b * v.strides()[0] + h * v.strides()[2],
          q.strides()[1],
          k.strides()[1],
          v.strides()[1]};
}

template <class T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

// Keys row i of a block sees: all of them, or j <= i + (tk - tq) when causal.
inline int64_t visible_keys(const AttentionArgs& a, int64_t i) {
  return a.causal ? std::min(a.tk, i + (a.tk - a.tq) + 1) : a.tk;
}

// Dropout factors of one probability row: f[j] = keep ? 1/(1-p) : 0 for j < n, where element
// e = e0 + j keeps when the 24-bit Philox lane (counter offset + e/4, lane e%4) >= p·2^24, the
// same test as philox_uniform(seed, offset, e) >= p.
template <class T>
void dropout_row(const AttentionArgs& a, uint64_t e0, int64_t n, T* f) {
  const uint32_t thr = static_cast<uint32_t>(std::ceil(a.dropout_p * 16777216.0));
  const T keep = static_cast<T>(1.0 / (1.0 - a.dropout_p));
  int64_t j = 0;
  while (j < n) {
    const uint64_t e = e0 + static_cast<uint64_t>(j);
    const Philox4 r = philox4x32_10(a.offset + e / 4, a.seed);
    for (unsigned lane = static_cast<unsigned>(e % 4); lane < 4 && j < n; ++lane, ++j)
      f[j] = (r.v[lane] >> 8) >= thr ? keep : T(0);
  }
}

// Runs f(bh) for every (batch, head) pair; threads only for enough work (the GEMMs inside a
// head then run on their own thread).
template <class F>
void for_each_head(const AttentionArgs& a, F&& f) {
  const int64_t n = a.batch * a.heads;
  parallel_for(n, n > 1 && 4 * n * a.tq * a.tk * a.head_dim >= kParallelMinFlops, f);
}

template <class T>
void forward_typed(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                   const Tensor& lse) {
  const int64_t H = a.heads, D = a.head_dim, ldo = H * D;
  T* po = static_cast<T*>(out.raw_data());
  T* pl = static_cast<T*>(lse.raw_data());
  for_each_head(a, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    const Head<T> hd = head_of<T>(q, k, v, b, h);
    std::vector<T> s(static_cast<size_t>(std::min(kRowBlock, a.tq) * a.tk));
    std::vector<T> drop(a.dropout_p > 0 ? static_cast<size_t>(a.tk) : 0);
    for (int64_t i0 = 0; i0 < a.tq; i0 += kRowBlock) {
      const int64_t m = std::min(kRowBlock, a.tq - i0), n = visible_keys(a, i0 + m - 1);
      // s = scale · q_block kᵀ over the block's visible keys
      gemm_rm(false, true, m, n, D, a.scale, hd.q + i0 * hd.ldq, hd.ldq, hd.k, hd.ldk, 0.0, s.data(), n);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, nv = visible_keys(a, i);
        T* row = s.data() + r * n;
        const T mx = row_max(row, nv), sum = exp_shift_sum(row, nv, mx), inv = T(1) / sum;
        pl[bh * a.tq + i] = mx + std::log(sum);
        if (a.dropout_p > 0) {
          dropout_row(a, static_cast<uint64_t>((bh * a.tq + i) * a.tk), nv, drop.data());
          const T* f = drop.data();
#pragma omp simd
          for (int64_t j = 0; j < nv; ++j) row[j] *= inv * f[j];
        } else {
#pragma omp simd
          for (int64_t j = 0; j < nv; ++j) row[j] *= inv;
        }
        std::fill(row + nv, row + n, T(0));
      }
      // out_block = p v
      gemm_rm(false, false, m, D, n, 1.0, s.data(), n, hd.v, hd.ldv, 0.0, po + (b * a.tq + i0) * ldo + h * D, ldo);
    }
  });
}

template <class T>
void backward_typed(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse,
                    const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const int64_t H = a.heads, D = a.head_dim, ldo = H * D;
  const T* pl = static_cast<const T*>(lse.raw_data());
  const T* pg = static_cast<const T*>(gout.raw_data());
  T* pgq = gq.defined() ? static_cast<T*>(gq.raw_data()) : nullptr;
  T* pgk = gk.defined() ? static_cast<T*>(gk.raw_data()) : nullptr;
  T* pgv = gv.defined() ? static_cast<T*>(gv.raw_data()) : nullptr;
  for_each_head(a, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    const Head<T> hd = head_of<T>(q, k, v, b, h);
    T* gkb = pgk ? pgk + b * a.tk * ldo + h * D : nullptr;  // gk, gv: contiguous [B, Tk, H, D]
    T* gvb = pgv ? pgv + b * a.tk * ldo + h * D : nullptr;
    for (T* g : {gkb, gvb})
      if (g)
        for (int64_t j = 0; j < a.tk; ++j) std::memset(g + j * ldo, 0, static_cast<size_t>(D) * sizeof(T));
    const size_t block = static_cast<size_t>(std::min(kRowBlock, a.tq) * a.tk);
    std::vector<T> p(block), dp(block);
    std::vector<T> drop(a.dropout_p > 0 ? static_cast<size_t>(a.tk) : 0);
    for (int64_t i0 = 0; i0 < a.tq; i0 += kRowBlock) {
      const int64_t m = std::min(kRowBlock, a.tq - i0), n = visible_keys(a, i0 + m - 1);
      const T* gob = pg + (b * a.tq + i0) * ldo + h * D;
      const T* qb = hd.q + i0 * hd.ldq;
      // p = exp(scale · q kᵀ - lse): the forward's probabilities, rebuilt
      gemm_rm(false, true, m, n, D, a.scale, qb, hd.ldq, hd.k, hd.ldk, 0.0, p.data(), n);
      // dp = gout vᵀ: the gradient of the (dropped-out) probabilities
      gemm_rm(false, true, m, n, D, 1.0, gob, ldo, hd.v, hd.ldv, 0.0, dp.data(), n);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, nv = visible_keys(a, i);
        const T l = pl[bh * a.tq + i];
        T* prow = p.data() + r * n;
        T* drow = dp.data() + r * n;
        exp_shift_sum(prow, nv, l);
        if (a.dropout_p > 0) {
          dropout_row(a, static_cast<uint64_t>((bh * a.tq + i) * a.tk), nv, drop.data());
          const T* f = drop.data();
#pragma omp simd
          for (int64_t j = 0; j < nv; ++j) drow[j] *= f[j];  // the gradient of the probabilities before dropout
          const T dsum = dot(prow, drow, nv);                // D_i = sum_j P_ij dP_ij
#pragma omp simd
          for (int64_t j = 0; j < nv; ++j) {
            drow[j] = prow[j] * (drow[j] - dsum);  // ds / scale
            prow[j] *= f[j];                       // the dropped-out probabilities, for gv
          }
        } else {
          const T dsum = dot(prow, drow, nv);
#pragma omp simd
          for (int64_t j = 0; j < nv; ++j) drow[j] = prow[j] * (drow[j] - dsum);
        }
        std::fill(prow + nv, prow + n, T(0));
        std::fill(drow + nv, drow + n, T(0));
      }
      // gv[:n] += pᵀ gout_block
      if (gvb) gemm_rm(true, false, n, D, m, 1.0, p.data(), n, gob, ldo, 1.0, gvb, ldo);
      // gq_block = scale · ds k[:n]
      if (pgq)
        gemm_rm(false, false, m, D, n, a.scale, dp.data(), n, hd.k, hd.ldk, 0.0, pgq + (b * a.tq + i0) * ldo + h * D,
                ldo);
      // gk[:n] += scale · dsᵀ q_block
      if (gkb) gemm_rm(true, false, n, D, m, a.scale, dp.data(), n, qb, hd.ldq, 1.0, gkb, ldo);
    }
  });
}

}  // namespace

void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       const Tensor& lse) {
  if (q.dtype() == DType::F32)
    forward_typed<float>(a, q, k, v, out, lse);
  else
    forward_typed<double>(a, q, k, v, out, lse);
}

void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  (void)out;  // D_i comes from the rebuilt probabilities; the CUDA kernel reads it from out instead
  if (q.dtype() == DType::F32)
    backward_typed<float>(a, q, k, v, lse, gout, gq, gk, gv);
  else
    backward_typed<double>(a, q, k, v, lse, gout, gq, gk, gv);
}

}  // namespace lowrank::cpu
