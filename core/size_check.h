// Overflow-checked size arithmetic for allocations (shape_numel in core/shape.h is checked too):
// a lying file or config must never wrap a byte count into a small allocation.
#pragma once
#include <cstdint>

namespace lowrank {

// numel * elem_size in bytes; throws naming `what` when either is negative or the product passes
// INT64_MAX.
int64_t checked_nbytes(int64_t numel, int64_t elem_size, const char* what);

}  // namespace lowrank
