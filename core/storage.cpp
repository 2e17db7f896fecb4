// Storage and the table of allocators per device type (the CPU one is core/cpu_allocator.cpp).
#include "core/storage.h"

#include "core/cpu_allocator.h"
#include "core/dispatch.h"
#include "core/error.h"

namespace lowrank {
namespace {

Allocator* g_allocators[kNumDeviceTypes] = {cpu_caching_allocator(), nullptr};

}  // namespace

Allocator* get_allocator(DeviceType t) {
  return g_allocators[static_cast<int>(t)];
}
void set_allocator(DeviceType t, Allocator* a) {
  g_allocators[static_cast<int>(t)] = a;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  Allocator* a = get_allocator(device.type);
  if (a == nullptr) {  // the CUDA allocator is installed when the CUDA kernels register
    backend_table(device.type);
    a = get_allocator(device.type);
  }
  LR_CHECK(a != nullptr, "no allocator for device {} (is this build without CUDA?)", device.str());
  data_ = a->allocate_on(nbytes, device);
}

Storage::~Storage() {
  if (data_) get_allocator(device_.type)->deallocate(data_, nbytes_);
}

}  // namespace lowrank
