// The CPU thread pool (kernels/cpu/parallel.h): every index once, in parts that depend only on the
// thread count, nested regions serial; and the ops it splits (GEMM by rows or columns, LayerNorm's
// per-part partial sums, long elementwise rows, a whole tensor summed to one number) equal to their one-thread results.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/ops.h"
#include "core/threads.h"
#include "kernels/cpu/parallel.h"

using namespace lowrank;

namespace {

// Restores the default thread count when a test ends, pass or fail.
struct ThreadsGuard {
  ~ThreadsGuard() { set_num_threads(0); }
};

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to(DType::F64).to_vector<double>(), y = b.to(DType::F64).to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST(Parallel, EveryIndexOnceInFixedParts) {
  ThreadsGuard guard;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    EXPECT_EQ(num_threads(), threads);
    for (int64_t n : {0, 1, 2, 5, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<int64_t> part_begin(static_cast<size_t>(threads), -1);
      const int parts = cpu::parallel_chunks(n, true, [&](int64_t b, int64_t e, int p) {
        part_begin[static_cast<size_t>(p)] = b;
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n " << n << " i " << i;
      if (n > 1) {
        EXPECT_EQ(parts, threads);
        for (int p = 0; p < parts; ++p) {  // part p starts at n·p/parts, whoever runs it
          if (n * p / parts < n * (p + 1) / parts) {
            EXPECT_EQ(part_begin[static_cast<size_t>(p)], n * p / parts);
          }
        }
      }
    }
  }
}

TEST(Parallel, NestedRegionsRunSerially) {
  ThreadsGuard guard;
  set_num_threads(2);
  std::atomic<int> inner_threads{0};
  cpu::parallel_for(2, true, [&](int64_t) { inner_threads += cpu::parallel_threads(); });
  EXPECT_EQ(inner_threads.load(), 2);  // 1 in each part
  EXPECT_EQ(cpu::parallel_threads(), 2);
}

TEST(Parallel, SplitOpsMatchOneThread) {
  ThreadsGuard guard;
  const Tensor a = randn({300, 200}, 1), b = randn({200, 90}, 2), bt = randn({700, 200}, 3);
  const Tensor x = randn({64, 768}, 4), w = randn({768}, 5), bias = randn({768}, 6), gy = randn({64, 768}, 7);
  const Tensor big = randn({1 << 19}, 8);
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<Tensor> out{matmul(a, b), matmul(a, bt.mT()), gelu(big), sum(big)};
    Tensor xi = x.detach().requires_grad_(true), wi = w.detach().requires_grad_(true);
    Tensor bi = bias.detach().requires_grad_(true);
    layer_norm(xi, wi, bi, 1e-5).backward(gy);
    out.insert(out.end(), {xi.grad(), wi.grad(), bi.grad()});
    return out;
  };
  const std::vector<Tensor> one = run(1), two = run(2), two_again = run(2);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_LT(max_abs_diff(one[i], two[i]), 1e-4) << "output " << i;
    EXPECT_EQ(max_abs_diff(two[i], two_again[i]), 0.0) << "output " << i << ": not deterministic at 2 threads";
  }
}

TEST(Parallel, AWholeTensorSumAddsPerThreadPartials) {
  ThreadsGuard guard;
  const Tensor big = randn({(1 << 18) + 7}, 9);  // an odd length: parts of unequal size
  const std::vector<float> v = big.to_vector<float>();
  double want = 0;
  for (float f : v) want += f;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    EXPECT_NEAR(sum(big).item(), want, 1e-6 * std::sqrt(static_cast<double>(v.size()))) << threads << " threads";
    EXPECT_NEAR(mean(big).item(), want / static_cast<double>(v.size()), 1e-6) << threads;
  }
}
