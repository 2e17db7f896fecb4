// Builds without CUDA leave the CUDA slots empty (each use throws "no CUDA kernel for <op>") and
// install an allocator that refuses with the same words a CUDA build uses when no GPU answers.
#include "core/cuda/cuda_api.h"
#include "core/dispatch.h"
#include "core/storage.h"

namespace lowrank {
namespace {

class NoCudaAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return allocate_on(nbytes, Device::cuda(0)); }
  void* allocate_on(size_t, Device d) override {
    cuda_require_device(d.index);  // throws "CUDA device cuda:N is not available: ..."
    return nullptr;
  }
  void deallocate(void*, size_t) override {}
};

}  // namespace

void register_cuda_kernels(Backend&) {
  static NoCudaAllocator allocator;
  set_allocator(DeviceType::CUDA, &allocator);
}

}  // namespace lowrank
