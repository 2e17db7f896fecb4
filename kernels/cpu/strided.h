// Strided N-operand loops for CPU kernels: coalesce axes, then walk rows of the last axis.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cpu/parallel.h"

namespace lowrank::cpu {

// A contiguous elementwise op of at least this many elements is split over the pool: below it the
// wake-up (a few microseconds) outweighs half of a memory-bound pass.
constexpr int64_t kElementwiseParallelMin = int64_t{1} << 18;

// Most axes a CPU kernel loop handles (after coalescing, at most the tensor's rank).
constexpr size_t kMaxLoopDims = 32;

// A fixed-capacity vector of sizes or strides: loop set-up allocates nothing, which matters for
// the microsecond ops of small tensors.
class DimVec {
 public:
  DimVec() = default;
  DimVec(std::initializer_list<int64_t> v) {
    for (int64_t x : v) push_back(x);
  }
  void push_back(int64_t v) {
    LR_CHECK(n_ < kMaxLoopDims, "CPU kernels handle at most {} axes", kMaxLoopDims);
    d_[n_++] = v;
  }
  int64_t& operator[](size_t i) { return d_[i]; }
  int64_t operator[](size_t i) const { return d_[i]; }
  int64_t& back() { return d_[n_ - 1]; }
  int64_t back() const { return d_[n_ - 1]; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t numel() const {
    int64_t p = 1;
    for (size_t i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }

 private:
  std::array<int64_t, kMaxLoopDims> d_;
  size_t n_ = 0;
};

template <size_t N>
struct StridedLoop {
  DimVec shape;                   // coalesced, at least one axis
  std::array<DimVec, N> strides;  // in elements, per operand
};

// Merges adjacent axes that are contiguous with each other in every operand; drops size-1 axes.
// Shp is Shape or DimVec; the strides have the same type.
template <size_t N, class Shp>
StridedLoop<N> make_loop(const Shp& shape, const std::array<const std::type_identity_t<Shp>*, N>& strides) {
  StridedLoop<N> L;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!L.shape.empty()) {
      bool merge = true;
      for (size_t k = 0; k < N; ++k)
        if (L.strides[k].back() != (*strides[k])[d] * shape[d]) merge = false;
      if (merge) {
        L.shape.back() *= shape[d];
        for (size_t k = 0; k < N; ++k) L.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    L.shape.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) L.strides[k].push_back((*strides[k])[d]);
  }
  if (L.shape.empty()) {
    L.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) L.strides[k].push_back(0);
  }
  return L;
}

// Calls f(offsets, n, inner_strides) for every row of the last coalesced axis; rows run in
// parallel when the loop is large.
template <size_t N, class F>
void for_each_row(const StridedLoop<N>& L, F&& f) {
  const int64_t inner = L.shape.back();
  const int64_t nd = static_cast<int64_t>(L.shape.size());
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) rows *= L.shape[d];
  std::array<int64_t, N> ist;
  for (size_t k = 0; k < N; ++k) ist[k] = L.strides[k].back();
  if (rows == 1) {  // the common case of contiguous operands: no index arithmetic
    if (inner < kElementwiseParallelMin) {
      f(std::array<int64_t, N>{}, inner, ist);
      return;
    }
    // One long row: split in whole multiples of kSplitUnit elements (SIMD and cache lines).
    constexpr int64_t kSplitUnit = 64;
    parallel_chunks((inner + kSplitUnit - 1) / kSplitUnit, true, [&](int64_t u0, int64_t u1, int) {
      const int64_t b = u0 * kSplitUnit, e = std::min(inner, u1 * kSplitUnit);
      std::array<int64_t, N> off;
      for (size_t k = 0; k < N; ++k) off[k] = b * ist[k];
      f(off, e - b, ist);
    });
    return;
  }
  // Rows split from 2^16 elements: back-to-back broadcast adds of [256, 256] (~10 us each) ran
  // 1.45-1.85x faster on 2 threads at load ~0.8 (bench/core_bench BM_BroadcastAddThreadsPaired,
  // 3 runs; at load ~7, with no free core to gain, 1-4% slower).
  parallel_for(rows, rows * inner >= 2 * kParallelMinElems, [&](int64_t r) {
    std::array<int64_t, N> off{};
    int64_t rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % L.shape[d];
      rem /= L.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * L.strides[k][d];
    }
    f(off, inner, ist);
  });
}

}  // namespace lowrank::cpu
