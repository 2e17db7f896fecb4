// Storage and the built-in 64-byte-aligned CPU allocator.
#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/dispatch.h"
#include "core/error.h"

namespace lowrank {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    LR_CHECK(p != nullptr, "out of host memory allocating {} bytes", nbytes);
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
};

CpuAllocator g_cpu_allocator;
Allocator* g_allocators[kNumDeviceTypes] = {&g_cpu_allocator, nullptr};

}  // namespace

Allocator* get_allocator(DeviceType t) { return g_allocators[static_cast<int>(t)]; }
void set_allocator(DeviceType t, Allocator* a) { g_allocators[static_cast<int>(t)] = a; }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  Allocator* a = get_allocator(device.type);
  if (a == nullptr) {  // the CUDA allocator is installed when the CUDA kernels register
    backend_table(device.type);
    a = get_allocator(device.type);
  }
  LR_CHECK(a != nullptr, "no allocator for device {} (is this build without CUDA?)", device.str());
  data_ = a->allocate(nbytes);
}

Storage::~Storage() {
  if (data_) get_allocator(device_.type)->deallocate(data_, nbytes_);
}

}  // namespace lowrank
