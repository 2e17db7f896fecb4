// A size-bucketed cache in front of aligned_alloc. Every op allocates its output; without the
// cache each 16 KB+ request made glibc consolidate its fast bins (and big ones went to mmap and
// page faults), which cost more than the kernels of small ops. Sanitizer builds skip the cache
// so that AddressSanitizer still sees every use after free.
#include "core/cpu_allocator.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/error.h"
#include "core/storage.h"

namespace lowrank {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCache = false;
#else
constexpr bool kCache = true;
#endif
constexpr size_t kAlign = 64;
// Blocks above this size are not cached (they are rare and glibc serves them with mmap).
constexpr size_t kMaxCachedBlock = size_t{256} << 20;
// At most this much freed memory is held; beyond it blocks go back to the C library.
constexpr size_t kMaxCachedBytes = size_t{1} << 30;
// Blocks from this size are aligned to and backed by 2 MB pages where the kernel offers them
// (transparent huge pages in "madvise" mode, Debian's default, give none unless asked). With 4 KB
// pages every random row a DataLoader gathers from a data set of 188 MB missed the TLB (the MLP's
// 32-row gather: 22-24 us, 15 us on 2 MB pages), and a 2-step GPT-2 124M run took 670K page faults
// and 11.3 s of system time (220K and 9.1 s on 2 MB pages: the zeroing of fresh memory remains).
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeMin = size_t{4} << 20;

void* allocate_block(size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (size >= kHugeMin) {
    void* p = std::aligned_alloc(kHugePage, (size + kHugePage - 1) / kHugePage * kHugePage);
    if (p != nullptr) madvise(p, size, MADV_HUGEPAGE);  // advice only: a refusal changes nothing
    return p;
  }
#endif
  return std::aligned_alloc(kAlign, size);
}

// Size classes: multiples of 64 bytes up to 4 KB, then eight steps per power of two (at most
// 12.5% slack), so that nearby sizes share a class. Returns the class and its block size.
constexpr size_t kSmallClasses = 4096 / kAlign;  // classes 1..64 (0 is unused)
constexpr size_t kNumClasses = kSmallClasses + 1 + 8 * 64;

size_t size_class(size_t n, size_t& block) {
  if (n <= 4096) {
    const size_t k = n == 0 ? 1 : (n + kAlign - 1) / kAlign;
    block = k * kAlign;
    return k;
  }
  const int log2 = 63 - __builtin_clzll(n);  // n in [2^log2, 2^(log2+1))
  const size_t step = size_t{1} << (log2 - 3);
  const size_t sub = (n - (size_t{1} << log2) + step - 1) / step;  // 0..8
  block = (size_t{1} << log2) + sub * step;
  return kSmallClasses + 1 + static_cast<size_t>(log2 - 12) * 8 + sub;
}

// The lock is held for a few instructions, uncontended almost always: a spin lock costs one
// atomic exchange where a pthread mutex costs a lock and an unlock call.
class SpinLock {
 public:
  void lock() {
    while (flag_.exchange(true, std::memory_order_acquire))
      while (flag_.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void unlock() { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

class CpuCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t size = 0;
    const size_t c = size_class(nbytes, size);
    if (kCache && size <= kMaxCachedBlock) {
      std::lock_guard<SpinLock> lock(mu_);
      std::vector<void*>& bin = free_[c];
      if (!bin.empty()) {
        void* p = bin.back();
        bin.pop_back();
        cached_ -= size;
        ++hits_;
        return p;
      }
      ++misses_;
    } else {
      size = (nbytes + kAlign - 1) / kAlign * kAlign;  // uncached: no class slack
    }
    void* p = allocate_block(size);
    if (p == nullptr) {
      empty_cache();
      p = allocate_block(size);
    }
    LR_CHECK(p != nullptr, "out of host memory allocating {} bytes", nbytes);
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    size_t size = 0;
    const size_t c = size_class(nbytes, size);
    if (kCache && size <= kMaxCachedBlock) {
      std::lock_guard<SpinLock> lock(mu_);
      if (cached_ + size <= kMaxCachedBytes) {
        free_[c].push_back(p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void empty_cache() {
    std::lock_guard<SpinLock> lock(mu_);
    for (auto& bin : free_) {
      for (void* p : bin) std::free(p);
      bin.clear();
    }
    cached_ = 0;
  }

  CpuCacheStats stats() {
    std::lock_guard<SpinLock> lock(mu_);
    return {kCache, cached_, hits_, misses_};
  }

 private:
  SpinLock mu_;
  std::array<std::vector<void*>, kNumClasses> free_;
  size_t cached_ = 0, hits_ = 0, misses_ = 0;
};

CpuCachingAllocator& instance() {
  static auto* a = new CpuCachingAllocator();  // leaked on purpose: see the header
  return *a;
}

}  // namespace

Allocator* cpu_caching_allocator() {
  return &instance();
}
CpuCacheStats cpu_cache_stats() {
  return instance().stats();
}
void cpu_empty_cache() {
  instance().empty_cache();
}

}  // namespace lowrank
