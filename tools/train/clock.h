// The one clock of the training tools: seconds on a monotonic clock, durations as people read
// them ("1:05", "1:02:03"), and numbers with a fixed count of decimals for log lines.
#pragma once
#include <string>

#include "core/clock.h"

namespace lowrank::train {

// Seconds since an arbitrary fixed point of std::chrono::steady_clock (core/clock.h).
using lowrank::now_seconds;
// "m:ss" below an hour, "h:mm:ss" above; "--:--" for anything not a finite number >= 0.
std::string clock_text(double seconds);
// `v` with `decimals` digits after the point ("0.4512"); "nan", "inf" as printf writes them.
std::string fixed(double v, int decimals);
// As fixed, but "n/a" for NaN and ±inf: a table cell for a number a run may not have.
std::string fixed_or_na(double v, int decimals);
// `v` in scientific notation with `decimals` digits after the point ("1.00e-03").
std::string scientific(double v, int decimals);

}  // namespace lowrank::train
