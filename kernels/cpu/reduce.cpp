// CPU reductions (sum, max over any axes) and argmax along one axis.
#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/strided.h"

namespace lowrank::cpu {
namespace {

// Splits x's axes into kept (outer, in order) and reduced (inner) ones.
struct Split {
  DimVec outer, inner;
  DimVec outer_st, inner_st;
};

Split split_axes(const Tensor& x, uint64_t mask) {
  Split s;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (mask & (1ull << i)) {
      s.inner.push_back(x.shape()[i]);
      s.inner_st.push_back(x.strides()[i]);
    } else {
      s.outer.push_back(x.shape()[i]);
      s.outer_st.push_back(x.strides()[i]);
    }
  }
  return s;
}

// Sums in f64 with independent partial sums: one accumulator would chain every add on the
// previous one's latency; eight let the adds overlap and vectorize.
template <class T>
double sum_contiguous(const T* p, int64_t n) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<double>(p[i + l]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(p[i]);
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

template <class T>
double sum_strided(const T* p, int64_t n, int64_t st) {
  double a0 = 0, a1 = 0;
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    a0 += static_cast<double>(p[i * st]);
    a1 += static_cast<double>(p[(i + 1) * st]);
  }
  if (i < n) a0 += static_cast<double>(p[i * st]);
  return a0 + a1;
}

template <class T>
void reduce_typed(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t mask) {
  const T* px = static_cast<const T*>(x.raw_data());
  T* po = static_cast<T*>(out.raw_data());
  Split s = split_axes(x, mask);
  const int64_t n_out = s.outer.numel();
  const bool is_sum = op == ReduceOp::Sum;

  // Fast path: sum over leading axes of a row-major block (bias gradients): accumulate rows.
  if (is_sum && x.is_contiguous() && !s.outer.empty()) {
    int64_t lead = 0;
    while (lead < x.dim() && (mask & (1ull << lead))) ++lead;
    if (lead == static_cast<int64_t>(s.inner.size())) {
      const int64_t rows = s.inner.numel();
      std::fill(po, po + n_out, T(0));
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = px + r * n_out;
#pragma omp simd
        for (int64_t j = 0; j < n_out; ++j) po[j] += row[j];
      }
      return;
    }
  }

  // A whole contiguous tensor to one number (a loss's mean, a gradient norm): one partial sum per
  // thread over a fixed chunk, added in chunk order (the same result at a fixed thread count; at
  // one thread the serial sum below). The general path parallelises over outputs only. A sum is
  // one memory-bound pass, split from the elementwise ops' size: from 2^16 elements,
  // bench/core_bench BM_ChainThreadsPaired at [256, 256] (one such sum among 11 ops) took
  // 1.07-1.08x the wall time and 1.40x the CPU on 2 threads as on 1; from 2^18, 1.00 and 1.01-1.02
  // (3 alternating runs each, load ~1).
  if (is_sum && n_out == 1 && x.is_contiguous() && x.numel() >= kElementwiseParallelMin) {
    std::vector<double> partial(static_cast<size_t>(std::max(parallel_threads(), 1)), 0.0);
    const int parts = parallel_chunks(x.numel(), true, [&](int64_t b, int64_t e, int part) {
      partial[static_cast<size_t>(part)] = sum_contiguous(px + b, e - b);
    });
    double total = 0;
    for (int p = 0; p < parts; ++p) total += partial[static_cast<size_t>(p)];
    po[0] = static_cast<T>(total);
    return;
  }

  const DimVec one{1}, zero{0};
  auto L = s.inner.empty() ? make_loop<1>(one, {&zero}) : make_loop<1>(s.inner, {&s.inner_st});
  parallel_for(n_out, n_out > 64 && x.numel() >= 2 * kParallelMinElems, [&](int64_t o) {
    int64_t base = 0, rem = o;
    for (size_t d = s.outer.size(); d-- > 0;) {
      base += (rem % s.outer[d]) * s.outer_st[d];
      rem /= s.outer[d];
    }
    using Acc = double;  // f32 sums accumulate in f64: long reductions stay accurate
    Acc acc = is_sum ? Acc(0) : -std::numeric_limits<Acc>::infinity();
    // Serial walk over the reduced block of this output element.
    const int64_t inner = L.shape.back();
    const int64_t nd = static_cast<int64_t>(L.shape.size());
    int64_t rows = 1;
    for (int64_t d = 0; d + 1 < nd; ++d) rows *= L.shape[d];
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off = base, rr = r;
      for (int64_t d = nd - 2; d >= 0; --d) {
        off += (rr % L.shape[d]) * L.strides[0][d];
        rr /= L.shape[d];
      }
      const int64_t st = L.strides[0].back();
      if (is_sum) {
        acc += st == 1 ? sum_contiguous(px + off, inner) : sum_strided(px + off, inner, st);
      } else {
        for (int64_t i = 0; i < inner; ++i) {
          Acc v = static_cast<Acc>(px[off + i * st]);
          if (v > acc || v != v) acc = v;  // NaN propagates
        }
      }
    }
    po[o] = static_cast<T>(acc);
  });
}

template <class T>
void argmax_typed(const Tensor& x, const Tensor& out, int axis) {
  const T* px = static_cast<const T*>(x.raw_data());
  int64_t* po = static_cast<int64_t*>(out.raw_data());
  Split s = split_axes(x, 1ull << axis);
  const int64_t n_out = s.outer.numel(), n = s.inner[0], st = s.inner_st[0];
  for (int64_t o = 0; o < n_out; ++o) {
    int64_t base = 0, rem = o;
    for (size_t d = s.outer.size(); d-- > 0;) {
      base += (rem % s.outer[d]) * s.outer_st[d];
      rem /= s.outer[d];
    }
    int64_t best = 0;
    T bv = px[base];
    for (int64_t i = 1; i < n; ++i) {
      T v = px[base + i * st];
      if (v > bv) bv = v, best = i;
    }
    po[o] = best;
  }
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t axes_mask) {
  if (x.dtype() == DType::F32)
    reduce_typed<float>(op, x, out, axes_mask);
  else
    reduce_typed<double>(op, x, out, axes_mask);
}

void argmax(const Tensor& x, const Tensor& out, int axis) {
  if (x.dtype() == DType::F32)
    argmax_typed<float>(x, out, axis);
  else
    argmax_typed<double>(x, out, axis);
}

}  // namespace lowrank::cpu
