// Tensor construction, views (which share storage), copies, casts and printing on the CPU.
#include <gtest/gtest.h>

#include <thread>

#include "core/cpu_allocator.h"
#include "core/ops.h"
#include "support/compare.h"
#include "support/errors.h"

using namespace lowrank;
using lowrank::test::all_close;
using lowrank::test::strided_values;
using lowrank::test::throws_with;

namespace {
Tensor iota(const Shape& s, DType t = DType::F64) {
  return Tensor::arange(shape_numel(s), t).reshape(s);
}
}  // namespace

TEST(Tensor, Factories) {
  EXPECT_EQ(Tensor::zeros({2, 2}).to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(Tensor::ones({3}, DType::F64).to_vector<double>(), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(Tensor::full({2}, 2.5).to_vector<float>(), (std::vector<float>{2.5f, 2.5f}));
  Tensor s = Tensor::scalar(7, DType::F64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 7.0);
  EXPECT_EQ(Tensor::arange(4, DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  Tensor e = Tensor::empty({0, 3});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.to_vector<float>().empty());
}

TEST(Tensor, StorageIs64ByteAligned) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = Tensor::empty({n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.storage()->data()) % 64, 0u) << n;
  }
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = iota({3, 4});
  Tensor t = a.mT(), s = a.slice(1, 1, 4, 2), r = a.reshape({4, 3}), d = a.detach();
  for (const Tensor* v : {&t, &s, &r, &d}) EXPECT_EQ(v->storage().get(), a.storage().get());
  s.fill_(-1);  // writes through the view
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1}));
  EXPECT_EQ(t.contiguous().to_vector<double>(), (std::vector<double>{0, 4, 8, -1, -1, -1, 2, 6, 10, -1, -1, -1}));
  Tensor c = a.clone();
  EXPECT_NE(c.storage().get(), a.storage().get());
}

TEST(Tensor, PermuteTransposeAndStrides) {
  Tensor a = iota({2, 3, 4});
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Strides{1, 12, 4}));
  EXPECT_FALSE(p.is_contiguous());
  // p[i, j, k] = a[j, k, i] = 12 j + 4 k + i
  std::vector<double> want;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) want.push_back(12 * j + 4 * k + i);
  EXPECT_EQ(p.contiguous().to_vector<double>(), want);
  EXPECT_EQ(strided_values(p), want);
  EXPECT_EQ(a.transpose(0, 2).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(a.transpose(-1, 0).shape(), (Shape{4, 3, 2}));
}

TEST(Tensor, SliceWithStepAndNegativeBounds) {
  Tensor a = iota({10});
  EXPECT_EQ(a.slice(0, 1, 8, 3).to_vector<double>(), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(a.slice(0, -3, 10).to_vector<double>(), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(a.slice(0, 8, 100).to_vector<double>(), (std::vector<double>{8, 9}));  // clamped
  EXPECT_EQ(a.slice(0, 5, 2).numel(), 0);
  EXPECT_EQ(a.narrow(0, 2, 3).to_vector<double>(), (std::vector<double>{2, 3, 4}));
  Tensor m = iota({4, 5});
  Tensor s = m.slice(0, 1, 4, 2).slice(1, 0, 5, 2);  // rows 1, 3; cols 0, 2, 4
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.contiguous().to_vector<double>(), (std::vector<double>{5, 7, 9, 15, 17, 19}));
  EXPECT_EQ(m.select(1, -1).to_vector<double>(), (std::vector<double>{4, 9, 14, 19}));
  EXPECT_EQ(m.select(0, 2).shape(), (Shape{5}));
}

TEST(Tensor, ExpandUnsqueezeSqueezeFlatten) {
  Tensor v = iota({3});
  Tensor e = v.unsqueeze(0).expand({2, 3});
  EXPECT_EQ(e.strides(), (Strides{0, 1}));
  EXPECT_EQ(e.contiguous().to_vector<double>(), (std::vector<double>{0, 1, 2, 0, 1, 2}));
  Tensor col = v.unsqueeze(1).expand({3, 2});
  EXPECT_EQ(col.contiguous().to_vector<double>(), (std::vector<double>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(v.expand({4, -1}).shape(), (Shape{4, 3}));
  EXPECT_EQ(iota({1, 3, 1}).squeeze(0).squeeze(-1).shape(), (Shape{3}));
  EXPECT_EQ(iota({2, 3}).squeeze(0).shape(), (Shape{2, 3}));  // not size 1: unchanged
  EXPECT_EQ(iota({2, 3, 4}).flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(iota({2, 3, 4}).flatten().shape(), (Shape{24}));
}

TEST(Tensor, ReshapeViewsWhenItCanAndCopiesWhenItMust) {
  Tensor a = iota({2, 3, 4});
  Tensor r = a.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.storage().get(), a.storage().get());
  Tensor t = a.transpose(0, 1);     // [3, 2, 4], strides [4, 12, 1]
  Tensor v = t.view({3, 2, 2, 2});  // splitting an axis never needs a copy
  EXPECT_EQ(v.storage().get(), a.storage().get());
  EXPECT_EQ(v.strides(), (Strides{4, 12, 2, 1}));
  Tensor m = a.slice(2, 0, 2).view({6, 2});  // [2, 3, 2] strides [12, 4, 1]: the first two axes merge
  EXPECT_EQ(m.storage().get(), a.storage().get());
  EXPECT_EQ(m.contiguous().to_vector<double>(), (std::vector<double>{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21}));
  EXPECT_TRUE(throws_with([&] { t.view({3, 8}); }, {"view", "[3, 2, 4]", "[4, 12, 1]", "reshape"}));
  Tensor c = a.mT().reshape({-1});  // needs a copy
  EXPECT_NE(c.storage().get(), a.storage().get());
  EXPECT_EQ(c.to_vector<double>()[1], 4.0);
  EXPECT_TRUE(throws_with([&] { a.mT().view({24}); }, {"view", "reshape"}));
}

TEST(Tensor, CopyCastFill) {
  Tensor a = Tensor::zeros({2, 3}, DType::F64);
  a.copy_(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}));  // broadcast + cast
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{1, 2, 3, 1, 2, 3}));
  a.mT().slice(0, 1, 2).fill_(9);
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{1, 9, 3, 1, 9, 3}));
  Tensor i = Tensor::from_vector(std::vector<double>{1.7, -2.2}, {2}).to(DType::I64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(i.to(DType::F32).to_vector<float>(), (std::vector<float>{1, -2}));
  Tensor u8 = Tensor::from_data<uint8_t>(std::vector<uint8_t>{0, 1, 255}, {3});
  EXPECT_TRUE(all_close(u8.to(DType::F64), {0, 1, 255}, 0));
  EXPECT_EQ(a.to(Device::cpu()).storage().get(), a.storage().get());
}

TEST(Tensor, CopyFromNonContiguousOddSizes) {
  // 37 x 13 transposed and sliced: an odd size no vector loop divides.
  Tensor a = iota({37, 13}, DType::F32);
  Tensor v = a.mT().slice(1, 3, 37, 5);  // [13, 7]
  Tensor c = v.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  std::vector<double> want;
  for (int i = 0; i < 13; ++i)
    for (int j = 3; j < 37; j += 5) want.push_back(j * 13 + i);
  EXPECT_TRUE(all_close(c, want, 0));
  EXPECT_EQ(strided_values(v), want);
}

TEST(Tensor, PrintShowsShapeDtypeAndValues) {
  std::string s = Tensor::from_vector(std::vector<float>{1.5f, 2, 3, 4}, {2, 2}).str();
  EXPECT_NE(s.find("shape=[2, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("f32"), std::string::npos) << s;
  EXPECT_NE(s.find("[[1.5, 2], [3, 4]]"), std::string::npos) << s;
  std::string big = Tensor::arange(100).str();
  EXPECT_NE(big.find("..."), std::string::npos) << big;
  EXPECT_EQ(Tensor().str(), "Tensor(undefined)");
}

TEST(CpuAllocator, ReusesFreedBlocksOfTheSameClass) {
  const CpuCacheStats before = cpu_cache_stats();
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({1000, 3});
    first = t.storage()->data();
  }
  Tensor again = Tensor::empty({3000});  // same bytes: same size class
  if (!before.enabled) GTEST_SKIP() << "the cache is off in sanitizer builds";
  EXPECT_EQ(again.storage()->data(), first);
  EXPECT_GT(cpu_cache_stats().hits, before.hits);
  Tensor big = Tensor::empty({(1 << 20) + 3});  // odd size: still 64-byte aligned
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.storage()->data()) % 64, 0u);
  big = Tensor();
  EXPECT_GT(cpu_cache_stats().bytes_cached, 0u);
  cpu_empty_cache();
  EXPECT_EQ(cpu_cache_stats().bytes_cached, 0u);
}

// Blocks from 4 MB start on a 2 MB boundary, so that the kernel can back them with huge pages
// (asked for with madvise; core/cpu_allocator.cpp), and they are whole and writable.
TEST(CpuAllocator, LargeBlocksAreAlignedForHugePages) {
  for (int64_t n : {int64_t{1} << 20, (int64_t{3} << 20) + 5}) {  // 4 MB and ~12 MB of f32
    Tensor t = Tensor::empty({n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.storage()->data()) % (uintptr_t{2} << 20), 0u) << n;
    t.fill_(1.5);
    EXPECT_EQ(sum(t).item(), 1.5 * static_cast<double>(n));
  }
}

TEST(CpuAllocator, TensorsMadeAndFreedOnDifferentThreads) {
  // Blocks move between the per-thread free lists (core/pool.h) and the storage cache.
  std::vector<Tensor> made;
  std::thread producer([&] {
    for (uint64_t i = 0; i < 200; ++i) made.push_back(mul(randn({7}, i), 2.0));
  });
  producer.join();
  EXPECT_TRUE(all_close(made[5], strided_values(mul(randn({7}, 5), 2.0)), 0));
  std::vector<Tensor> mine;
  for (uint64_t i = 0; i < 200; ++i) mine.push_back(randn({5}, i));
  std::thread consumer([moved = std::move(mine)]() mutable { moved.clear(); });
  consumer.join();
  made.clear();
  Tensor after = add(Tensor::ones({5}), Tensor::ones({5}));
  EXPECT_TRUE(all_close(after, {2, 2, 2, 2, 2}, 0));
}
