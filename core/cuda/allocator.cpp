// The caching allocator of CUDA memory: freed blocks go to a per-device bin of their rounded
// size and are handed out again, so a training step does not pay cudaMalloc/cudaFree (each of
// which synchronizes the device). Safe without events because every kernel of a device runs on
// its one stream: a block reused by a later op is ordered after the ops that used it before.
#include <algorithm>
#include <bit>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/cuda_context.h"
#include "core/error.h"
#include "core/storage.h"

namespace lowrank {
namespace {

// Sizes round up to a multiple of a quarter of their power of two (at least 512 bytes), so a
// bin wastes at most 25% and a handful of bins covers every size a model asks for.
constexpr size_t kMinBlock = 512;

size_t round_block(size_t n) {
  if (n <= kMinBlock) return kMinBlock;
  size_t step = std::max(kMinBlock, std::bit_floor(n) / 4);
  return (n + step - 1) / step * step;
}

struct Block {
  size_t size = 0;
  int device = 0;
};

class CudaCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override { return allocate_on(nbytes, Device::cuda(0)); }

  void* allocate_on(size_t nbytes, Device d) override {
    cuda_require_device(d.index);
    if (nbytes == 0) return nullptr;
    const size_t size = round_block(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    void* p = nullptr;
    auto& bin = free_[key(d.index, size)];
    if (!bin.empty()) {
      p = bin.back();
      bin.pop_back();
      cached_ -= size;
    } else {
      p = malloc_device(d.index, size);
    }
    live_[p] = Block{size, d.index};
    in_use_ += size;
    peak_ = std::max(peak_, in_use_);
    return p;
  }

  void deallocate(void* p, size_t) override {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: nothing sensible to do in a destructor
    const Block b = it->second;
    live_.erase(it);
    in_use_ -= b.size;
    cached_ += b.size;
    free_[key(b.device, b.size)].push_back(p);
  }

  CudaMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, peak_, cached_};
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached(-1);
  }

 private:
  // One map for all devices: the device index sits in the top byte of the key.
  static uint64_t key(int device, size_t size) { return (static_cast<uint64_t>(device) << 56) | size; }
  static int key_device(uint64_t k) { return static_cast<int>(k >> 56); }

  // Frees the cached blocks of one device (or of all, device < 0). Caller holds mu_.
  void release_cached(int device) {
    for (auto& [k, bin] : free_) {
      const int dev = key_device(k);
      if ((device >= 0 && dev != device) || bin.empty()) continue;
      cuda::set_device(dev);
      for (void* p : bin) {
        CUDA_CHECK(cudaFree(p));  // synchronizes the device: no queued kernel still reads p
        cached_ -= k & ((uint64_t{1} << 56) - 1);
      }
      bin.clear();
    }
  }

  // Caller holds mu_. On failure frees this device's cache and tries once more.
  void* malloc_device(int device, size_t size) {
    cuda::set_device(device);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky, but it would surface at the next launch check
      release_cached(device);
      e = cudaMalloc(&p, size);
    }
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      LR_FAIL("CUDA out of memory: cannot allocate {} bytes on cuda:{} ({} bytes in use by tensors, {} free of {})",
              size, device, in_use_, free_b, total_b);
    }
    CUDA_CHECK(e);
    return p;
  }

  std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<void*>> free_;
  std::unordered_map<void*, Block> live_;
  size_t in_use_ = 0, peak_ = 0, cached_ = 0;
};

// Never destroyed: storages freed during static destruction still call deallocate().
CudaCachingAllocator& the_allocator() {
  static auto* a = new CudaCachingAllocator();
  return *a;
}

}  // namespace

Allocator* cuda_caching_allocator() {
  return &the_allocator();
}
CudaMemoryStats cuda_memory_stats() {
  return the_allocator().stats();
}
void cuda_reset_peak_memory() {
  the_allocator().reset_peak();
}
void cuda_empty_cache() {
  if (cuda_runtime_device_count() > 0) the_allocator().empty_cache();
}

}  // namespace lowrank
