// The one lock around PLplot's global state, shared by every file that draws (plot.cpp, plot_confusion.cpp).
#pragma once
#include <mutex>

namespace lowrank::analysis::detail {
std::mutex& plplot_mutex();
}  // namespace lowrank::analysis::detail
