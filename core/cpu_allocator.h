// The CPU allocator: 64-byte aligned blocks, cached by size so training loops reuse them.
#pragma once
#include <cstddef>

namespace lowrank {

class Allocator;

// The process-wide CPU allocator (never destroyed: tensors may outlive static destructors).
Allocator* cpu_caching_allocator();

struct CpuCacheStats {
  bool enabled = false;     // false in sanitizer builds, which need every free to reach the C library
  size_t bytes_cached = 0;  // freed blocks held for reuse
  size_t hits = 0, misses = 0;
};
CpuCacheStats cpu_cache_stats();
// Returns every cached block to the C library.
void cpu_empty_cache();

}  // namespace lowrank
