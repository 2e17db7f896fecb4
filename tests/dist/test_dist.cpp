// lowrank_dist in a world of one (the process ctest starts): the shard split, gradient buckets,
// the sweep's byte packing, and the NCCL path on a 1-rank communicator when a GPU answers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/device.h"
#include "core/ops.h"
#include "tools/dist/dist.h"
#include "tools/train/sweep.h"

namespace lowrank {
namespace {

TEST(Dist, AWorldOfOneWithoutMpirun) {
  // ctest does not start us through mpirun: rank 0 of 1, collectives return at once.
  EXPECT_EQ(dist::rank(), 0);
  EXPECT_EQ(dist::size(), 1);
  EXPECT_TRUE(dist::is_leader());
  EXPECT_FALSE(dist::distributed());
  float v[3] = {1, 2, 3};
  dist::all_reduce_sum(v, 3);
  EXPECT_EQ(v[2], 3.0f);
  EXPECT_TRUE(dist::broadcast_flag(true));
  EXPECT_EQ(dist::gather_strings("x"), std::vector<std::string>{"x"});
}

TEST(Dist, ShardsCoverTheBatchOnceAndEvenly) {
  for (int world : {1, 2, 3, 7})
    for (int64_t n : {0, 1, 5, 64, 65}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        auto [b, e] = dist::shard(n, r, world);
        EXPECT_EQ(b, next) << n << " " << r << "/" << world;
        EXPECT_LE(e - b, n / world + 1);
        EXPECT_GE(e - b, n / world);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  EXPECT_THROW(dist::shard(4, 2, 2), Error);
}

// GradientSync with `always` packs, reduces (a sum over one rank) and unpacks even here: every
// gradient must come back as it was, whatever the bucket size, including ones larger than a bucket,
// non-contiguous ones and parameters without a gradient.
TEST(Dist, GradientBucketsGiveEveryGradientBack) {
  optim::NamedParameters params;
  std::vector<std::vector<float>> want;
  for (int64_t n : {3, 1, 17, 64, 5}) {
    Tensor p = Tensor::zeros({n});
    p.requires_grad_(true);
    Tensor g = Tensor::arange(n).to(DType::F32);
    g = mul(g, static_cast<double>(n));
    p.set_grad(g);
    want.push_back(g.to_vector<float>());
    params.emplace_back("p" + std::to_string(n), p);
  }
  Tensor no_grad = Tensor::zeros({4});
  no_grad.requires_grad_(true);
  params.emplace_back("unused", no_grad);
  Tensor t = Tensor::arange(6).to(DType::F32).reshape({2, 3});
  Tensor strided = Tensor::zeros({3, 2});
  strided.requires_grad_(true);
  strided.set_grad(t.mT());  // a transposed view: not contiguous
  params.emplace_back("strided", strided);
  for (int64_t bucket : {8, 16, 40, 1 << 20}) {
    dist::GradientSync sync(bucket, /*always=*/true);
    sync.all_reduce(params);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(params[i].second.grad().to_vector<float>(), want[i]) << bucket;
    EXPECT_FALSE(no_grad.grad().defined());
    EXPECT_EQ(strided.grad().to_vector<float>(), t.mT().contiguous().to_vector<float>());
    EXPECT_GE(sync.calls(), 1);
  }
  EXPECT_THROW(dist::GradientSync(4), Error);
}

TEST(Dist, PackedResultsComeBackBitForBit) {
  Tensor a = Tensor::arange(6).to(DType::F32).reshape({2, 3});
  a = mul(a, 0.1);
  train::Packer p;
  p.i64(-7).f64(0.1).f64(std::nan("")).str("lora_r8_s0").f64s({1.0 / 3, -0.0}).tensor(a).str("").f64s({});
  train::Unpacker u(p.bytes());
  EXPECT_EQ(u.i64(), -7);
  EXPECT_EQ(u.f64(), 0.1);
  EXPECT_TRUE(std::isnan(u.f64()));
  EXPECT_EQ(u.str(), "lora_r8_s0");
  std::vector<double> v = u.f64s();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], 1.0 / 3);
  EXPECT_TRUE(std::signbit(v[1]));
  Tensor b = u.tensor();
  EXPECT_EQ(b.shape(), a.shape());
  EXPECT_EQ(b.to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(u.str(), "");
  EXPECT_TRUE(u.f64s().empty());  // no numbers: nothing copied (an empty vector's data() is null)
  EXPECT_TRUE(u.done());
  EXPECT_THROW(u.i64(), Error);  // past the end: an error, not a read out of bounds
  train::Unpacker lying(std::string("\xff\xff\xff\x7f\0\0\0\0", 8));
  EXPECT_THROW(lying.str(), Error);
}

TEST(Dist, ASweepOfOneRunsEveryJobInOrder) {
  std::vector<int64_t> ran;
  auto out = train::run_sweep(5, [&](int64_t i) {
    ran.push_back(i);
    return std::string(static_cast<size_t>(i), 'x');
  });
  EXPECT_EQ(ran, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  ASSERT_EQ(out.size(), 5u);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], std::string(i, 'x'));
}

// The NCCL path (tools/gpu-check runs it on a GPU machine): a 1-rank communicator's all-reduce
// gives the tensor back, and the gradient buckets on the device agree with the CPU's.
TEST(DistNccl, OneRankCommunicatorAllReduce) {
  if (!dist::built_with_nccl()) GTEST_SKIP() << "this build has no NCCL (CUDA off or NCCL not found)";
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Device gpu = Device::parse("cuda");
  Tensor x = mul(Tensor::arange(1000).to(DType::F32), 0.5).to(gpu);
  dist::all_reduce_sum(x);
  EXPECT_EQ(x.to(Device::cpu()).to_vector<float>(), mul(Tensor::arange(1000).to(DType::F32), 0.5).to_vector<float>());
  optim::NamedParameters params;
  for (int64_t n : {7, 300, 5000}) {
    Tensor p = Tensor::zeros({n}, DType::F32, gpu);
    p.requires_grad_(true);
    p.set_grad(mul(Tensor::arange(n).to(DType::F32), 0.25).to(gpu));
    params.emplace_back("p" + std::to_string(n), p);
  }
  dist::GradientSync sync(1024, /*always=*/true);
  sync.all_reduce(params);
  for (auto& [name, p] : params)
    EXPECT_EQ(p.grad().to(Device::cpu()).to_vector<float>(),
              mul(Tensor::arange(p.numel()).to(DType::F32), 0.25).to_vector<float>())
        << name;
}

}  // namespace
}  // namespace lowrank
