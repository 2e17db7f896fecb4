// NCCL collectives on CUDA tensors, for lowrank_dist's CUDA path: the communicator is set up over
// MPI as llm.c does (ncclGetUniqueId on rank 0, broadcast, ncclCommInitRank), one per process for
// its device, on first use. Compiled only when the build has CUDA and NCCL (LOWRANK_WITH_NCCL).
#pragma once
#include "core/tensor.h"

namespace lowrank::dist::nccl {

// In place: the sum over the ranks of a contiguous f32 or f64 CUDA tensor, on the device's stream.
// In a world of one it still goes through NCCL (a 1-rank communicator): tools/gpu-check tests that.
void all_reduce_sum(const Tensor& t);
// Destroys the communicator (World's end); the next all_reduce_sum makes a new one.
void shutdown();

}  // namespace lowrank::dist::nccl
