// How many CPU threads the kernels use: the size of the CPU backend's one thread pool
// (kernels/cpu/parallel.h; OpenBLAS runs single-threaded under it). The tools' --threads flag.
#pragma once

#include <cstdint>
#include <functional>

namespace lowrank {

// n >= 1 sizes the pool (its workers are joined and started anew when the count changes); n == 0
// restores the default, one per core (std::thread::hardware_concurrency; the tools resolve their
// --threads 0 themselves, see tools/train/setup.h). Defined by kernels/cpu.
void set_num_threads(int n);
// The thread count parallel regions use now.
int num_threads();

// Runs body(begin, end) over contiguous parts of [0, n) on the pool's threads when `parallel`
// (else once, here): for code outside the kernels, such as the DataLoader's row gather. Defined by
// kernels/cpu.
void parallel_ranges(int64_t n, bool parallel, const std::function<void(int64_t, int64_t)>& body);

}  // namespace lowrank
