// The CPU thread pool behind parallel_run (kernels/cpu/parallel.h) and set_num_threads
// (core/threads.h). Workers wait for a new generation of work: a short spin (back-to-back ops
// reuse a warm worker), then a futex sleep through std::atomic::wait, so an idle pool takes no
// CPU from OpenBLAS, from the other process on a shared machine, or from the next serial op.
// OpenMP's default policy spins ~300K iterations after every region, and OpenBLAS's pthread pool
// spins after every GEMM; on two cores the two pools took turns stealing each other's core.
#include "kernels/cpu/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/threads.h"

namespace lowrank::cpu {
namespace {

// Spin iterations (a pause each, ~10-50 ns) before a waiting thread sleeps: long enough to catch
// the next op of a forward pass, short enough that a sleeping pool costs nothing.
constexpr int kSpinIterations = 2000;

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

thread_local bool t_in_region = false;

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int threads() const { return threads_; }

  // One region at a time; a second caller (another application thread) runs serially instead.
  // Parts are claimed, not assigned: when a worker has been descheduled (a shared machine), the
  // caller runs its part instead of waiting for it.
  bool try_run(int64_t n, int parts, void (*body)(void*, int64_t, int64_t, int), void* ctx) {
    std::unique_lock lock(busy_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    n_ = n;
    parts_ = parts;
    body_ = body;
    ctx_ = ctx;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t g = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store(pack(g, parts, 0), std::memory_order_release);  // publishes the fields above
    generation_.store(g, std::memory_order_release);
    generation_.notify_all();
    t_in_region = true;
    run_claimed(g);
    t_in_region = false;
    for (int spin = 0;; ++spin) {
      const int d = done_.load(std::memory_order_acquire);
      if (d == parts) break;
      if (spin < kSpinIterations)
        cpu_relax();
      else
        done_.wait(d, std::memory_order_acquire);
    }
    return true;
  }

 private:
  // claim_ = generation (32 bits) | parts (16) | next unclaimed part (16).
  static uint64_t pack(uint32_t g, int parts, int next) {
    return (uint64_t{g} << 32) | (static_cast<uint64_t>(parts) << 16) | static_cast<uint64_t>(next);
  }

  // Claims and runs parts of region g until none is left; the fields are read only after a
  // successful claim, when the region cannot end before this part is done.
  void run_claimed(uint32_t g) {
    uint64_t v = claim_.load(std::memory_order_acquire);
    for (;;) {
      const int parts = static_cast<int>((v >> 16) & 0xffff), next = static_cast<int>(v & 0xffff);
      if (static_cast<uint32_t>(v >> 32) != g || next >= parts) return;
      if (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const int64_t b = n_ * next / parts_, e = n_ * (next + 1) / parts_;
      if (b < e) body_(ctx_, b, e, next);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == parts) done_.notify_one();
      v = claim_.load(std::memory_order_acquire);
    }
  }

  void work() {
    t_in_region = true;  // nested regions inside a worker run serially
    uint32_t seen = 0;
    for (;;) {
      uint32_t g = generation_.load(std::memory_order_acquire);
      for (int spin = 0; g == seen; ++spin) {
        if (spin < kSpinIterations)
          cpu_relax();
        else
          generation_.wait(seen, std::memory_order_acquire);
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      if (stop_) return;
      run_claimed(g);
    }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::mutex busy_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
  // The current region, written by the caller before the claim_ store that publishes it.
  int64_t n_ = 0;
  int parts_ = 0;
  void (*body_)(void*, int64_t, int64_t, int) = nullptr;
  void* ctx_ = nullptr;
};

// Created on first use or by set_num_threads, and never destroyed at exit: a static destructor that
// runs a kernel after the pool's own destructor would otherwise start a pool nobody joins. (The
// mutex is constant-initialised and its destructor does nothing.)
std::mutex g_pool_mutex;
Pool* g_pool = nullptr;
std::atomic<int> g_threads{0};  // 0: not decided yet

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

Pool& pool() {
  std::lock_guard lock(g_pool_mutex);
  if (!g_pool) {
    const int n = g_threads.load() > 0 ? g_threads.load() : default_threads();
    openblas_set_num_threads(1);  // GEMMs are split over this pool instead
    g_pool = new Pool(n);
    g_threads = n;
  }
  return *g_pool;
}

}  // namespace

int parallel_threads() {
  if (t_in_region) return 1;
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : pool().threads();
}

void parallel_run(int64_t n, int parts, void (*body)(void*, int64_t, int64_t, int), void* ctx) {
  Pool& p = pool();
  parts = std::min({parts, p.threads(), 0xffff});  // the claim word holds 16 bits of parts
  if (parts <= 1 || t_in_region || !p.try_run(n, parts, body, ctx)) {
    // Serial, with the same chunks, so partials combine the same way.
    const bool outer = t_in_region;
    t_in_region = true;
    for (int q = 0; q < parts; ++q) {
      const int64_t b = n * q / parts, e = n * (q + 1) / parts;
      if (b < e) body(ctx, b, e, q);
    }
    t_in_region = outer;
  }
}

}  // namespace lowrank::cpu

namespace lowrank {

void set_num_threads(int n) {
  LR_CHECK(n >= 0, "set_num_threads: thread count must be >= 0 (0 = one per core), got {}", n);
  if (n == 0) n = cpu::default_threads();
  std::lock_guard lock(cpu::g_pool_mutex);
  if (cpu::g_pool && cpu::g_pool->threads() == n) return;
  delete cpu::g_pool;  // joins the old workers
  cpu::g_pool = nullptr;
  openblas_set_num_threads(1);
  cpu::g_pool = new cpu::Pool(n);
  cpu::g_threads = n;
}

int num_threads() {
  const int n = cpu::g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : cpu::pool().threads();
}

void parallel_ranges(int64_t n, bool parallel, const std::function<void(int64_t, int64_t)>& body) {
  cpu::parallel_chunks(n, parallel, [&](int64_t b, int64_t e, int) { body(b, e); });
}

}  // namespace lowrank
