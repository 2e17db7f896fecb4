// Shapes and strides (in elements), and the arithmetic on them shared by every op.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowrank {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Strides contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);
// Normalises a possibly negative axis; throws naming `op` when it is out of range.
int normalize_axis(int64_t axis, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace lowrank
