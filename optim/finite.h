// Value checks over tensors of any device, shared by the optimizer (refusing a state file no run
// could have written) and the training guard (parameters that turned NaN or infinite).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "optim/optimizer.h"

namespace lowrank::optim {

// The row-major index of the first NaN or infinite element of a float tensor (f32/f64, any
// device and layout), or nullopt when every element is finite. Throws for other dtypes.
std::optional<int64_t> first_non_finite(const Tensor& t);
// The first of `tensors` holding a NaN or infinite element, with that element's index. Tensors off
// the CPU are summed on their device first (a finite sum means every element is finite, as NaN and
// infinity survive a sum) and only a non-finite sum is looked at element by element.
std::optional<std::pair<std::string, int64_t>> first_non_finite(const NamedParameters& tensors);
// The row-major index of the first element below zero (-0.0 is not), or nullopt.
std::optional<int64_t> first_negative(const Tensor& t);

}  // namespace lowrank::optim
