// make_pooled<T>(args...): std::make_shared whose block (object + control block) comes from a
// per-thread free list of same-sized blocks. Every op creates a TensorImpl, a Storage and a
// Node; malloc/free of those blocks was a large share of a small op's cost. Sanitizer builds
// use plain make_shared so AddressSanitizer still sees each use after free.
#pragma once
#include <cstddef>
#include <memory>
#include <new>

namespace lowrank::detail {

// Blocks one thread keeps for reuse per size; more go back to operator delete.
constexpr size_t kPoolMaxBlocks = 4096;

// Trivially destructible so it stays usable while the thread's other thread_locals (and, on the
// main thread, static objects that own tensors) are destroyed; PoolReaper empties it first.
struct PoolList {
  void* head = nullptr;
  size_t count = 0;
  bool closed = false;
};

template <size_t Size>
struct PoolReaper {
  PoolList* list;
  ~PoolReaper() {
    while (list->head) {
      void* next = *static_cast<void**>(list->head);
      ::operator delete(list->head);
      list->head = next;
    }
    list->count = 0;
    list->closed = true;  // frees after this point go straight to operator delete
  }
};

template <size_t Size>
PoolList& pool_list() {
  static thread_local PoolList list;
  static thread_local PoolReaper<Size> reaper{&list};
  (void)reaper;
  return list;
}

template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}

  T* allocate(size_t n) {
    if (n == 1) {
      PoolList& l = pool_list<sizeof(T)>();
      if (l.head) {
        void* p = l.head;
        l.head = *static_cast<void**>(p);
        --l.count;
        return static_cast<T*>(p);
      }
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    static_assert(sizeof(T) >= sizeof(void*));
    if (n == 1) {
      PoolList& l = pool_list<sizeof(T)>();
      if (!l.closed && l.count < kPoolMaxBlocks) {
        *reinterpret_cast<void**>(p) = l.head;
        l.head = p;
        ++l.count;
        return;
      }
    }
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const {
    return true;
  }
};

template <class T, class... Args>
std::shared_ptr<T> make_pooled(Args&&... args) {
#if defined(__SANITIZE_ADDRESS__)
  return std::make_shared<T>(std::forward<Args>(args)...);
#else
  return std::allocate_shared<T>(PoolAllocator<T>{}, std::forward<Args>(args)...);
#endif
}

}  // namespace lowrank::detail
