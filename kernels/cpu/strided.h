// Strided N-operand loops for CPU kernels: coalesce axes, then walk rows of the last axis.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lowrank::cpu {

template <size_t N>
struct StridedLoop {
  std::vector<int64_t> shape;                  // coalesced, at least one axis
  std::array<std::vector<int64_t>, N> strides;  // in elements, per operand
};

// Merges adjacent axes that are contiguous with each other in every operand; drops size-1 axes.
template <size_t N>
StridedLoop<N> make_loop(const Shape& shape, const std::array<const Strides*, N>& strides) {
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
  const bool par = rows > 1 && rows * inner >= (1 << 16);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<int64_t, N> off{};
    int64_t rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = rem % L.shape[d];
      rem /= L.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * L.strides[k][d];
    }
    f(off, inner, ist);
  }
}

}  // namespace lowrank::cpu
