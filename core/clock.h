// The one monotonic clock of the library and its tools: seconds as a double, for durations and
// rates (tokens/s). tools/train/clock.h re-exports it next to its formatting helpers.
#pragma once
#include <chrono>

namespace lowrank {

// Seconds since an arbitrary fixed point of std::chrono::steady_clock (differences only).
inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace lowrank
