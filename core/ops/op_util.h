// Helpers shared by the op implementations in core/ops/ (not part of the public API).
#pragma once
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"

namespace lowrank::detail {

// A view of `t` broadcast to `shape` (stride 0 on broadcast axes) that records nothing.
Tensor broadcast_view(const Tensor& t, const Shape& shape);

inline void check_same(const char* op, const Tensor& a, const Tensor& b) {
  LR_CHECK(a.defined() && b.defined(), "{}: undefined input", op);
  LR_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch, {} {} vs {} {}", op, dtype_name(a.dtype()), a.shape(),
           dtype_name(b.dtype()), b.shape());
  LR_CHECK(a.device() == b.device(), "{}: device mismatch, {} on {} vs {} on {}", op, a.shape(), a.device().str(),
           b.shape(), b.device().str());
}

inline void check_float(const char* op, const Tensor& a) {
  LR_CHECK(a.defined(), "{}: undefined input", op);
  LR_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::F64, "{}: needs f32 or f64, got {} {}", op,
           dtype_name(a.dtype()), a.shape());
}

// Bit mask of normalised axes (all axes when `axes` is empty).
uint64_t axes_mask(const std::vector<int64_t>& axes, int64_t ndim, const char* op);
// x's shape with 1 on the masked axes (keepdim), or with them removed.
Shape reduced_shape(const Shape& s, uint64_t mask, bool keepdim);

}  // namespace lowrank::detail
