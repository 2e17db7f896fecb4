// The fuzz build links no kernels and no ops: the parsers under test only allocate and fill tensors
// by hand. Any kernel they might reach fails cleanly with "no CPU kernel for <op>" (core/dispatch.h);
// the ops that autograd's gradient accumulation and einsum's lowering name (neither reached by a
// parser) throw too.
#include "core/dispatch.h"
#include "core/ops.h"

namespace lowrank {

void register_cpu_kernels(Backend&) {}
void register_cuda_kernels(Backend&) {}

Tensor add(const Tensor&, const Tensor&) {
  LR_FAIL("add is not linked into the fuzz build");
}
Tensor sum_to(const Tensor&, const Shape&) {
  LR_FAIL("sum_to is not linked into the fuzz build");
}

Tensor matmul(const Tensor&, const Tensor&) {
  LR_FAIL("matmul is not linked into the fuzz build");
}
Tensor sum(const Tensor&, const std::vector<int64_t>&, bool) {
  LR_FAIL("sum is not linked into the fuzz build");
}

}  // namespace lowrank
