// The NCCL path of lowrank_dist: one communicator per process, bootstrapped over MPI (or made
// alone in a world of one), all-reduce on the stream every lowrank kernel of that device runs on.
#include "tools/dist/nccl.h"

#include <nccl.h>

#include "core/cuda/cuda_context.h"
#include "core/error.h"
#include "tools/dist/dist.h"

namespace lowrank::dist::nccl {
namespace {

ncclComm_t g_comm = nullptr;
int g_device = -1;

void check(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  throw Error(detail::format("NCCL {} failed on rank {} of {}: {} (another rank has probably stopped)", what,
                             dist::rank(), dist::size(), ncclGetErrorString(r)));
}

ncclComm_t comm_for(int device) {
  if (g_comm) {
    LR_CHECK(g_device == device, "NCCL: this rank's communicator is on cuda:{}, not cuda:{} (one device per rank)",
             g_device, device);
    return g_comm;
  }
  cuda::set_device(device);
  ncclUniqueId id;
  if (dist::rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  dist::broadcast(&id, sizeof(id), 0);
  check(ncclCommInitRank(&g_comm, dist::size(), id, dist::rank()), "ncclCommInitRank");
  g_device = device;
  return g_comm;
}

}  // namespace

void all_reduce_sum(const Tensor& t) {
  LR_CHECK(t.device().is_cuda(), "NCCL all-reduce: the tensor is on {}, not a CUDA device", t.device().str());
  LR_CHECK(t.is_contiguous(), "NCCL all-reduce: the tensor must be contiguous");
  LR_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "NCCL all-reduce: f32 or f64 only, got {}",
           dtype_name(t.dtype()));
  const int device = t.device().index;
  ncclComm_t c = comm_for(device);
  const ncclDataType_t type = t.dtype() == DType::F32 ? ncclFloat32 : ncclFloat64;
  check(
      ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), type, ncclSum, c, cuda::stream(device)),
      "all-reduce");
}

void shutdown() {
  if (g_comm) ncclCommDestroy(g_comm);
  g_comm = nullptr;
  g_device = -1;
}

}  // namespace lowrank::dist::nccl
