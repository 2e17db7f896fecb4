// The CUDA runtime pieces: the clear error when a device does not answer, the CUDA_CHECK family's
// messages, the caching allocator (stats, reuse, empty_cache), device transfers.
#include <gtest/gtest.h>

#if defined(LOWRANK_WITH_CUDA)
#include "core/cuda/cuda_context.h"
#include "core/cuda/cuda_libs.h"
#endif
#include "support/compare.h"
#include "support/device.h"
#include "support/gradcheck.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

// Skips tests of CUDA-only machinery (the allocator) whatever the device under test is.
#define LR_REQUIRE_CUDA()                                                                                          \
  do {                                                                                                             \
    if (!::lowrank::cuda_available()) GTEST_SKIP() << "no CUDA device: " << ::lowrank::cuda_unavailable_reason(0); \
  } while (0)

// The error names the device and says why; this holds with and without a GPU, with CUDA on or
// off: one past the last device never answers.
TEST(CudaRuntime, MissingDeviceThrowsClearError) {
  const int n = cuda_device_count();
  ASSERT_GE(n, 0);
  EXPECT_EQ(cuda_available(), n > 0);
  const std::string want = "CUDA device cuda:" + std::to_string(n) + " is not available: ";
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second time the kernels are registered already
    try {
      Tensor t = attempt == 0 ? Tensor::zeros({2, 3}, DType::F32, Device::cuda(n))
                              : Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).to(Device::cuda(n));
      FAIL() << "no error for cuda:" << n;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(want), std::string::npos) << m;
      EXPECT_GT(m.size(), want.size() + 3) << "no reason given: " << m;
    }
  }
  EXPECT_FALSE(cuda_unavailable_reason(n).empty());
}

#if defined(LOWRANK_WITH_CUDA)
TEST(CudaRuntime, CheckMacrosNameExpressionAndPlace) {
  try {
    CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
    EXPECT_NE(m.find("(TestBody)"), std::string::npos) << m;  // the function (gtest names it TestBody)
    EXPECT_NE(m.find("test_runtime.cpp:"), std::string::npos) << m;
  }
  try {
    CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos) << e.what();
  }
  try {
    CUSOLVER_CHECK(CUSOLVER_STATUS_INVALID_VALUE);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUSOLVER_STATUS_INVALID_VALUE"), std::string::npos) << e.what();
  }
}

// cuBLAS and cuSOLVER are loaded by name on first use: the sonames and symbols must resolve
// on any machine with the toolkit, GPU or not.
TEST(CudaRuntime, LibrariesLoadOnDemand) {
  const cuda::CublasApi& b = cuda::cublas_api();
  EXPECT_TRUE(b.create && b.set_stream && b.set_math_mode && b.sgemm && b.dgemm && b.sgemm_strided_batched &&
              b.dgemm_strided_batched);
  const cuda::CusolverApi& s = cuda::cusolver_api();
  EXPECT_TRUE(s.create && s.set_stream && s.sgesvd_buffer_size && s.dgesvd_buffer_size && s.sgesvd && s.dgesvd);
}
#endif

// The gradient of a move between devices (OpKind::ToDevice), which the CPU gradchecks cannot reach:
// gradcheck perturbs CPU inputs, so f goes to the device under test and back.
LR_GRADCHECK_TEST(CudaRuntime, ToDeviceGradcheck, OpKind::ToDevice) {
  LR_REQUIRE_TEST_DEVICE();
  if (test_device().is_cpu()) GTEST_SKIP() << "needs a device other than the CPU";
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return mul(x[0].to(test_device()), 3.0).to(Device::cpu()); },
                        {random_f64({3, 4}, 1)}));
}

TEST(CudaRuntime, HostDeviceRoundTrip) {
  LR_REQUIRE_TEST_DEVICE();
  for (DType t : {DType::F32, DType::F64, DType::I64, DType::I32, DType::U8}) {
    Tensor src = random_cpu({3, 17, 5}, DType::F64, 11, 40.0, 100.0).to(t);
    Tensor back = src.to(test_device()).to(Device::cpu());
    EXPECT_TRUE(all_equal<double>(back, src)) << dtype_name(t);
  }
  // A non-contiguous source goes through contiguous() first.
  Tensor src = random_cpu({6, 9}, DType::F32, 12);
  EXPECT_TRUE(all_equal<float>(src.mT().to(test_device()).to(Device::cpu()), src.mT().contiguous()));
  // Empty tensors move too.
  EXPECT_EQ(Tensor::empty({0, 4}, DType::F32, test_device()).to(Device::cpu()).numel(), 0);
}

TEST(CudaAllocator, StatsTrackUseCacheAndPeak) {
  LR_REQUIRE_CUDA();
  cuda_synchronize();
  cuda_empty_cache();
  const CudaMemoryStats s0 = cuda_memory_stats();
  EXPECT_EQ(s0.bytes_cached, 0u);
  constexpr size_t kBytes = 1000 * sizeof(float);
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({1000}, DType::F32, Device::cuda(0));
    first = t.raw_data();
    const CudaMemoryStats s1 = cuda_memory_stats();
    EXPECT_GE(s1.bytes_in_use, s0.bytes_in_use + kBytes);
    EXPECT_LE(s1.bytes_in_use, s0.bytes_in_use + 2 * kBytes);  // rounding wastes at most a bin step
    EXPECT_GE(s1.peak_bytes, s1.bytes_in_use);
  }
  const CudaMemoryStats s2 = cuda_memory_stats();
  EXPECT_EQ(s2.bytes_in_use, s0.bytes_in_use);
  EXPECT_GE(s2.bytes_cached, kBytes);
  {
    // The same size comes back from the cache: same block, cache shrinks.
    Tensor t = Tensor::empty({1000}, DType::F32, Device::cuda(0));
    EXPECT_EQ(t.raw_data(), first);
    const CudaMemoryStats s3 = cuda_memory_stats();
    EXPECT_EQ(s3.bytes_cached + (s3.bytes_in_use - s0.bytes_in_use), s2.bytes_cached);
  }
  cuda_reset_peak_memory();
  EXPECT_EQ(cuda_memory_stats().peak_bytes, cuda_memory_stats().bytes_in_use);
  cuda_empty_cache();
  EXPECT_EQ(cuda_memory_stats().bytes_cached, 0u);
}

TEST(CudaAllocator, ReusedBlocksHoldNewData) {
  LR_REQUIRE_CUDA();
  for (int round = 0; round < 3; ++round) {
    Tensor cpu = random_cpu({257, 3}, DType::F32, 100 + round);
    Tensor dev = cpu.to(Device::cuda(0));
    EXPECT_TRUE(all_equal<float>(dev, cpu)) << "round " << round;
  }
}

TEST(CudaAllocator, OutOfMemoryIsAnError) {
  LR_REQUIRE_CUDA();
  try {
    Tensor t = Tensor::empty({int64_t{1} << 48}, DType::F32, Device::cuda(0));  // 1 PiB
    FAIL() << "allocated 1 PiB";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  // The device still works afterwards (the failed allocation left no sticky error).
  Tensor x = Tensor::ones({4}, DType::F32, Device::cuda(0));
  EXPECT_EQ(sum(x).item(), 4.0);
}

}  // namespace
