// Shape arithmetic shared by the ops.
#include "core/shape.h"

#include "core/error.h"
#include "core/size_check.h"

namespace lowrank {

// Checked: a negative dimension or a product past INT64_MAX (a lying file or config) throws naming
// the shape instead of wrapping into a small allocation.
int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : s) {
    LR_CHECK(d >= 0, "shape {} has a negative dimension", s);
    overflow |= __builtin_mul_overflow(n, d, &n);
  }
  // Checked after the loop: a later 0 does not make an overflowing shape valid to build.
  LR_CHECK(!overflow, "shape {} has more elements than a 64-bit count holds", s);
  return n;
}

int64_t checked_nbytes(int64_t numel, int64_t elem_size, const char* what) {
  int64_t n = 0;
  LR_CHECK(numel >= 0 && elem_size >= 0 && !__builtin_mul_overflow(numel, elem_size, &n),
           "{}: {} elements of {} bytes overflow a 64-bit byte count", what, numel, elem_size);
  return n;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    // An empty tensor may have huge other dimensions ([0, 2^32, 2^32] from a lying IDX header):
    // its element count is 0, but the strides would overflow.
    if (i > 0) LR_CHECK(!__builtin_mul_overflow(acc, s[i], &acc), "shape {}: its strides overflow a 64-bit count", s);
  }
  return st;
}

std::string shape_str(const Shape& s) {
  return detail::format("{}", s);
}

int normalize_axis(int64_t axis, int64_t ndim, const char* op) {
  LR_CHECK(axis >= -ndim && axis < ndim, "{}: axis {} is out of range for a tensor of rank {}", op, axis, ndim);
  return static_cast<int>(axis < 0 ? axis + ndim : axis);
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  if (a == b) return a;
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    LR_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} do not broadcast", op, a, b);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace lowrank
