// set_num_threads: one knob for the two thread pools of the CPU backend (OpenBLAS, OpenMP).
#include "core/threads.h"

#include <cblas.h>
#include <omp.h>

#include "core/error.h"

namespace lowrank {

void set_num_threads(int n) {
  LR_CHECK(n >= 0, "set_num_threads: thread count must be >= 0 (0 = one per core), got {}", n);
  if (n == 0) n = omp_get_num_procs();
  openblas_set_num_threads(n);
  omp_set_num_threads(n);
}

int num_threads() {
  return omp_get_max_threads();
}

}  // namespace lowrank
