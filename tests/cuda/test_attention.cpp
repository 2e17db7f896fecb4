// The CUDA attention kernels against the CPU op (kernels/cpu/attention.cpp), forward and the dq,
// dk, dv of backward: causal and not, Tq < Tk (KV-cache chunks and the Tq = 1 decode step),
// dropout, head_dim 1 to 256 (every register-chunk instantiation), sizes no tile divides, and
// strided inputs (slices of a fused qkv tensor, narrowed cache views). The dropout mask must be
// the CPU's bit for bit.
#include <gtest/gtest.h>

#include <sstream>

#include "support/compare.h"
#include "support/device.h"

using namespace lowrank;
using namespace lowrank::test;

namespace {

enum class Layout { Contiguous, FusedQkv, CacheViews };

struct AttnCase {
  int64_t b, tq, tk, h, d;
  bool causal;
  double p;
  Layout layout;
};

std::string case_name(const AttnCase& c) {
  std::ostringstream os;
  os << "b" << c.b << "_tq" << c.tq << "_tk" << c.tk << "_h" << c.h << "_d" << c.d << (c.causal ? "_causal" : "")
     << (c.p > 0 ? "_dropout" : "")
     << (c.layout == Layout::FusedQkv     ? "_qkv"
         : c.layout == Layout::CacheViews ? "_cache"
                                          : "");
  return os.str();
}

const std::vector<AttnCase>& attn_cases() {
  static const std::vector<AttnCase> kCases = {
      {2, 5, 5, 3, 7, true, 0.0, Layout::Contiguous},    {1, 33, 33, 2, 64, false, 0.0, Layout::Contiguous},
      {2, 70, 70, 4, 64, true, 0.0, Layout::FusedQkv},   {1, 1, 37, 3, 64, true, 0.0, Layout::CacheViews},
      {2, 9, 100, 2, 48, true, 0.0, Layout::CacheViews}, {1, 65, 65, 1, 1, true, 0.0, Layout::Contiguous},
      {1, 40, 40, 2, 80, true, 0.2, Layout::Contiguous}, {2, 17, 31, 2, 128, false, 0.5, Layout::Contiguous},
      {1, 12, 12, 1, 256, true, 0.1, Layout::FusedQkv},  {1, 300, 300, 2, 32, true, 0.0, Layout::Contiguous},
      {3, 129, 129, 2, 16, true, 0.3, Layout::FusedQkv},
  };
  return kCases;
}

// q, k, v on one device in the case's layout, holding the values of the CPU tensors given.
struct Qkv {
  Tensor q, k, v, leaf;  // leaf: the tensor gradients land on (fused qkv) or undefined
};

Qkv make_layout(const AttnCase& c, const Tensor& q, const Tensor& k, const Tensor& v, bool on_dev) {
  auto place = [&](const Tensor& t) { return on_dev ? on_device(t, true) : cpu_leaf(t); };
  Qkv r;
  if (c.layout == Layout::FusedQkv) {  // [B, T, 3, H, D], q/k/v = select(2, ·): strided views
    NoGradGuard ng;
    Tensor fused = concat({q.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2)}, 2);
    r.leaf = place(fused);
  } else if (c.layout == Layout::CacheViews) {  // a cache longer than Tk, narrowed; a strided q
    NoGradGuard ng;
    Tensor pad = Tensor::zeros({c.b, 5, c.h, c.d}, q.dtype());
    Tensor kc = on_dev ? on_device(concat({k, pad}, 1)) : concat({k, pad}, 1);
    Tensor vc = on_dev ? on_device(concat({v, pad}, 1)) : concat({v, pad}, 1);
    r.q = place(q);
    r.k = kc.narrow(1, 0, c.tk);
    r.v = vc.narrow(1, 0, c.tk);
    return r;
  }
  if (r.leaf.defined()) {
    r.q = r.leaf.select(2, 0), r.k = r.leaf.select(2, 1), r.v = r.leaf.select(2, 2);
  } else {
    r.q = place(q), r.k = place(k), r.v = place(v);
  }
  return r;
}

using AttnParam = std::tuple<size_t, DType>;

class CudaAttention : public ::testing::TestWithParam<AttnParam> {};

TEST_P(CudaAttention, ForwardAndGradientsMatchCpu) {
  LR_REQUIRE_TEST_DEVICE();
  const auto [ci, dtype] = GetParam();
  const AttnCase& c = attn_cases()[ci];
  const uint64_t seed = 31000 + ci * 10;
  Tensor q = random_cpu({c.b, c.tq, c.h, c.d}, dtype, seed), k = random_cpu({c.b, c.tk, c.h, c.d}, dtype, seed + 1),
         v = random_cpu({c.b, c.tk, c.h, c.d}, dtype, seed + 2);
  Tensor g = random_cpu({c.b, c.tq, c.h, c.d}, dtype, seed + 3);
  Qkv cp = make_layout(c, q, k, v, false), dv = make_layout(c, q, k, v, true);
  Tensor yc = attention(cp.q, cp.k, cp.v, c.causal, 0.0, c.p, 17, 5);
  Tensor yd = attention(dv.q, dv.k, dv.v, c.causal, 0.0, c.p, 17, 5);
  ASSERT_TRUE(yd.device() == test_device());
  // Outputs are weighted means of v rows (|y| <= max |v|), gradients sums over Tk or Tq terms:
  // GEMM-like error, scaled by each result's magnitude.
  const Tol tol = gemm_tol(dtype);
  auto close = [&](const Tensor& got, const Tensor& want) { return all_close(got, want, scaled(tol, want)); };
  EXPECT_TRUE(close(yd, yc)) << "out";
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_device(g))).backward();
  if (c.layout == Layout::FusedQkv) {
    EXPECT_TRUE(close(dv.leaf.grad(), cp.leaf.grad())) << "d(qkv)";
  } else {
    EXPECT_TRUE(close(dv.q.grad(), cp.q.grad())) << "dq";
    if (c.layout == Layout::Contiguous) {
      EXPECT_TRUE(close(dv.k.grad(), cp.k.grad())) << "dk";
      EXPECT_TRUE(close(dv.v.grad(), cp.v.grad())) << "dv";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaAttention,
                         ::testing::Combine(case_indices(attn_cases()), ::testing::Values(DType::F32, DType::F64)),
                         [](const ::testing::TestParamInfo<AttnParam>& info) {
                           return case_name(attn_cases()[std::get<0>(info.param)]) + "_" +
                                  dtype_label(std::get<1>(info.param));
                         });

// With q = 0 every probability is 1/Tk, and v = I makes out[i, j] = keep_ij / ((1-p) Tk): the
// device's mask, read off directly, must be the CPU's bit for bit.
TEST(CudaAttention, DropoutMaskIsTheCpuMask) {
  LR_REQUIRE_TEST_DEVICE();
  const int64_t B = 2, H = 3, T = 40;
  std::vector<float> eye(static_cast<size_t>(B * T * H * T), 0.f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j)
      for (int64_t h = 0; h < H; ++h) eye[static_cast<size_t>(((b * T + j) * H + h) * T + j)] = 1.f;
  Tensor q = Tensor::zeros({B, T, H, T}), v = Tensor::from_vector(eye, {B, T, H, T});
  Tensor yc = attention(q, q, v, false, 0.0, 0.35, 123, 77);
  Tensor yd = attention(on_device(q), on_device(q), on_device(v), false, 0.0, 0.35, 123, 77);
  EXPECT_TRUE(all_equal<float>(yd, yc));
  Tensor kept = gt(yc, Tensor::scalar(0.0));
  const double frac = sum(kept).item() / static_cast<double>(kept.numel());
  EXPECT_NEAR(frac, 0.65, 0.05);  // 9600 draws: sigma 0.005
}

TEST(CudaAttention, HeadDimAboveTheKernelLimitIsRefused) {
  LR_REQUIRE_TEST_DEVICE();
  if (!test_device().is_cuda()) GTEST_SKIP() << "a CUDA kernel limit";
  Tensor q = on_device(random_cpu({1, 2, 1, 300}, DType::F32, 1));
  try {
    attention(q, q, q);
    ADD_FAILURE() << "head_dim 300 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim <= 256"), std::string::npos) << e.what();
  }
}

}  // namespace
