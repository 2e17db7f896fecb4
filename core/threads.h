// How many CPU threads the kernels use (OpenBLAS and OpenMP together): the tools' --threads flag.
#pragma once

namespace lowrank {

// n >= 1 sets both OpenBLAS's and OpenMP's thread counts; n == 0 restores the default (one per
// core). Defined by kernels/cpu.
void set_num_threads(int n);
// The thread count OpenMP regions will use now.
int num_threads();

}  // namespace lowrank
