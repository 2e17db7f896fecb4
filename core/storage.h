// Storage: one allocation on one device, shared by every view of it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace lowrank {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  // Storage calls this one: allocators of device types with several devices (CUDA) override it.
  virtual void* allocate_on(size_t nbytes, Device) { return allocate(nbytes); }
};

// The CPU allocator (64-byte aligned) is built in; the CUDA backend installs its own.
Allocator* get_allocator(DeviceType t);
void set_allocator(DeviceType t, Allocator* a);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace lowrank
