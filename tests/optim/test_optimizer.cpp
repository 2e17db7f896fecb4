// Optimizer behaviour beyond the torch replay: closed-form first steps, bit-identical resume from a
// saved state, schedules, clipping, the fused kernel's paths agreeing bit for bit, and bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numbers>

#include "core/dispatch.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "core/threads.h"
#include "optim/optim.h"

namespace lowrank {
namespace {

using optim::NamedParameters;

#define EXPECT_LR_ERROR(stmt, part)                                               \
  do {                                                                            \
    try {                                                                         \
      stmt;                                                                       \
      ADD_FAILURE() << "expected lowrank::Error from " #stmt;                     \
    } catch (const ::lowrank::Error& e) {                                         \
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what(); \
    }                                                                             \
  } while (0)

std::string temp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("lowrank_optim_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

template <class T>
bool same_bits(const Tensor& a, const Tensor& b) {
  std::vector<T> x = a.to_vector<T>(), y = b.to_vector<T>();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
}

NamedParameters make_params(uint64_t seed, DType dt = DType::F32) {
  return {{"layer.kernel", randn({7, 5}, seed, 0, dt)},
          {"layer.bias", randn({5}, seed, 100, dt)},
          {"head", randn({3, 3}, seed, 200, dt)}};
}

// Gradients that depend on the parameters and on the step, so a resume that got anything wrong
// (weights, moments, step count) drifts.
void set_grads(NamedParameters& ps, int64_t step) {
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor& p = ps[i].second;
    Tensor noise = randn(p.shape(), 1234, static_cast<uint64_t>(step * 16 + i) * 1000, p.dtype());
    p.set_grad(add(mul(p, 0.3), noise));
  }
}

TEST(Adam, FirstStepIsLrTimesGradOverAbsGradPlusEps) {
  // After one step m_hat = g and v_hat = g^2, so p1 = p0 - lr * g / (|g| + eps).
  NamedParameters ps{{"p", Tensor::from_vector(std::vector<double>{1.0, -2.0, 0.5, 3.0}, {4})}};
  std::vector<double> g{0.3, -1e-3, 2.0, 0.0};
  ps[0].second.set_grad(Tensor::from_vector(g, {4}));
  optim::AdamOptions o;
  o.lr = 0.1;
  o.eps = optim::kKerasAdamEps;
  optim::Adam adam(ps, o);
  adam.step();
  std::vector<double> p = ps[0].second.to_vector<double>(), p0{1.0, -2.0, 0.5, 3.0};
  for (size_t i = 0; i < 4; ++i) {
    double want = p0[i] - 0.1 * g[i] / (std::abs(g[i]) + 1e-7);
    EXPECT_NEAR(p[i], want, 1e-15 * std::abs(want)) << i;
  }
  EXPECT_EQ(p[3], 3.0);  // zero gradient, no move
}

TEST(AdamW, DecaysTheWeightsEvenWithZeroGradient) {
  NamedParameters ps{{"p", Tensor::from_vector(std::vector<double>{2.0, -4.0}, {2})}};
  ps[0].second.set_grad(Tensor::zeros({2}, DType::F64));
  optim::AdamW adamw(ps, {.lr = 0.1, .weight_decay = 0.5});
  adamw.step();
  // p * (1 - lr * wd) and then a zero Adam update.
  EXPECT_EQ(ps[0].second.to_vector<double>(), (std::vector<double>{2.0 * 0.95, -4.0 * 0.95}));
  EXPECT_EQ(optim::AdamW(make_params(1)).options().weight_decay, 1e-2);  // torch's default
  EXPECT_EQ(optim::Adam(make_params(1)).options().weight_decay, 0.0);
}

TEST(Optimizer, ParametersWithoutGradientsAreSkippedAndZeroGradDropsThem) {
  NamedParameters ps = make_params(3);
  Tensor before = ps[1].second.clone();
  set_grads(ps, 0);
  ps[1].second.zero_grad();
  optim::Adam adam(ps);
  adam.step();
  EXPECT_TRUE(same_bits<float>(ps[1].second, before));
  EXPECT_FALSE(same_bits<float>(ps[0].second, make_params(3)[0].second));
  adam.zero_grad();
  for (const auto& [n, p] : adam.parameters()) EXPECT_FALSE(p.grad().defined()) << n;
}

// Save after 4 steps, restore into a fresh optimizer over fresh parameter tensors, continue: the
// parameters after 9 steps are bit-identical to an uninterrupted run.
template <class Opt, class Options>
void check_resume(const Options& options, DType dt, bool schedule) {
  const int64_t total = 9, cut = 4;
  auto with_schedule = [&](optim::Optimizer& o) {
    if (schedule) o.set_schedule(optim::LrSchedule::cosine(0.05, 2, total));
  };
  NamedParameters ref = make_params(11, dt);
  Opt a(ref, options);
  with_schedule(a);
  for (int64_t k = 0; k < total; ++k) {
    set_grads(ref, k);
    a.step();
  }

  NamedParameters first = make_params(11, dt);
  Opt b(first, options);
  with_schedule(b);
  for (int64_t k = 0; k < cut; ++k) {
    set_grads(first, k);
    b.step();
  }
  std::string path = temp_file("resume.safetensors");
  b.save(path, {{"epoch", "3"}});
  std::map<std::string, Tensor> weights;
  for (const auto& [n, p] : first) weights[n] = p;
  io::save_safetensors(path + ".weights", weights);

  NamedParameters second = make_params(99, dt);  // other values: everything must come from the files
  io::SafetensorsFile w = io::load_safetensors(path + ".weights");
  for (auto& [n, p] : second) p.copy_(w.tensors.at(n));
  Opt c(second, options);
  with_schedule(c);
  std::map<std::string, std::string> md = c.load(path);
  EXPECT_EQ(md.at("epoch"), "3");
  EXPECT_EQ(c.step_count(), cut);
  for (int64_t k = cut; k < total; ++k) {
    set_grads(second, k);
    c.step();
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    bool same = dt == DType::F32 ? same_bits<float>(ref[i].second, second[i].second)
                                 : same_bits<double>(ref[i].second, second[i].second);
    EXPECT_TRUE(same) << ref[i].first;
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path + ".weights");
}

TEST(Optimizer, AdamResumesBitIdentically) {
  check_resume<optim::Adam>(optim::AdamOptions{.lr = 1e-2, .eps = optim::kKerasAdamEps}, DType::F32, false);
  check_resume<optim::Adam>(optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1}, DType::F64, true);
}

TEST(Optimizer, AdamWResumesBitIdentically) {
  check_resume<optim::AdamW>(optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.05}, DType::F32, true);
}

TEST(Optimizer, SgdResumesBitIdentically) {
  check_resume<optim::SGD>(optim::SgdOptions{.lr = 0.02, .momentum = 0.9, .nesterov = true}, DType::F32, false);
  check_resume<optim::SGD>(optim::SgdOptions{.lr = 0.02, .momentum = 0.5, .dampening = 0.1, .weight_decay = 0.01},
                           DType::F64, true);
}

TEST(Optimizer, StateDictNamesBuffersAfterTheirParameters) {
  NamedParameters ps = make_params(5);
  optim::Adam adam(ps);
  std::map<std::string, Tensor> s = adam.state_dict();
  EXPECT_EQ(s.size(), 6u);
  EXPECT_TRUE(s.count("layer.kernel.exp_avg") && s.count("layer.kernel.exp_avg_sq") && s.count("head.exp_avg"));
  // SGD's momentum buffer appears with a parameter's first update, as in torch.
  optim::SGD sgd(ps, {.lr = 0.1, .momentum = 0.9});
  EXPECT_TRUE(sgd.state_dict().empty());
  set_grads(ps, 0);
  ps[2].second.zero_grad();
  sgd.step();
  EXPECT_EQ(sgd.state_dict().size(), 2u);
  EXPECT_FALSE(sgd.state_dict().count("head.momentum_buffer"));
  EXPECT_TRUE(optim::SGD(ps, {.lr = 0.1}).state_dict().empty());
}

TEST(Optimizer, LoadRejectsStateThatDoesNotFit) {
  NamedParameters ps = make_params(5);
  optim::Adam adam(ps);
  std::map<std::string, Tensor> s = adam.state_dict();
  auto missing = s;
  missing.erase("head.exp_avg");
  EXPECT_LR_ERROR(adam.load_state_dict(missing, 1), "has no 'head.exp_avg'");
  auto extra = s;
  extra["other.exp_avg"] = Tensor::zeros({1});
  EXPECT_LR_ERROR(adam.load_state_dict(extra, 1), "'other.exp_avg' belongs to no parameter");
  auto shaped = s;
  shaped["head.exp_avg"] = Tensor::zeros({9});
  EXPECT_LR_ERROR(adam.load_state_dict(shaped, 1), "'head.exp_avg' has shape [9]");
  auto typed = s;
  typed["head.exp_avg"] = Tensor::zeros({3, 3}, DType::F64);
  EXPECT_LR_ERROR(adam.load_state_dict(typed, 1), "'head.exp_avg' is f64 but parameter 'head' is f32");
  EXPECT_LR_ERROR(adam.load_state_dict(s, -1), "negative step count");
  EXPECT_EQ(adam.step_count(), 0);  // a rejected load changes nothing

  std::string path = temp_file("wrong_kind.safetensors");
  optim::SGD(ps, {.lr = 0.1, .momentum = 0.9}).save(path);
  EXPECT_LR_ERROR(adam.load(path), "holds the state of a 'sgd' optimizer");
  io::save_safetensors(path, s);
  EXPECT_LR_ERROR(adam.load(path), "no 'optimizer' metadata");
  io::save_safetensors(path, s, {{"optimizer", "adam"}, {"step", "3x"}});
  EXPECT_LR_ERROR(adam.load(path), "step '3x' is not a count");
  std::filesystem::remove(path);
}

TEST(Optimizer, ConstructionRejectsBadParametersAndSettings) {
  Tensor p = Tensor::zeros({2});
  EXPECT_LR_ERROR(optim::Adam({{"a", p}, {"a", Tensor::zeros({2})}}), "'a' appears twice");
  EXPECT_LR_ERROR(optim::Adam({{"a", p}, {"b", p}}), "'b' is the same tensor");
  EXPECT_LR_ERROR(optim::Adam({{"", p}}), "empty name");
  EXPECT_LR_ERROR(optim::Adam({{"i", Tensor::zeros({2}, DType::I64)}}), "not f32/f64");
  EXPECT_LR_ERROR(optim::Adam({{"t", Tensor::zeros({2, 3}).mT()}}), "not contiguous");
  EXPECT_LR_ERROR(optim::Adam({{"a", p}}, {.beta1 = 1.0}), "betas");
  EXPECT_LR_ERROR(optim::Adam({{"a", p}}, {.lr = -1}), "learning rate");
  EXPECT_LR_ERROR(optim::AdamW({{"a", p}}, {.eps = -1}), "eps");
  EXPECT_LR_ERROR(optim::SGD({{"a", p}}, {.nesterov = true}), "Nesterov");
  EXPECT_LR_ERROR(optim::SGD({{"a", p}}, {.momentum = -0.5}), "momentum");
  optim::SGD ok({{"a", p}});
  EXPECT_LR_ERROR(ok.set_lr(std::nan("")), "learning rate");
}

TEST(AdamStep, RejectsMismatchedInputs) {
  AdamArgs a;
  Tensor p = Tensor::zeros({4}), g = Tensor::zeros({4}), m = Tensor::zeros({4}), v = Tensor::zeros({4});
  EXPECT_LR_ERROR(adam_step_(p, Tensor::zeros({5}), m, v, a), "adam_step: param is f32 [4]");
  EXPECT_LR_ERROR(adam_step_(p, g, Tensor::zeros({4}, DType::F64), v, a), "f64");
  EXPECT_LR_ERROR(adam_step_(Tensor::zeros({4}, DType::I64), g, m, v, a), "needs f32 or f64");
  Tensor nc = Tensor::zeros({2, 2}).mT();
  EXPECT_LR_ERROR(adam_step_(nc, Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), a),
                  "must be contiguous");
  AdamArgs bad = a;
  bad.step = 0;
  EXPECT_LR_ERROR(adam_step_(p, g, m, v, bad), "1-based");
  bad = a;
  bad.beta2 = 1.0;
  EXPECT_LR_ERROR(adam_step_(p, g, m, v, bad), "betas");
  // A non-contiguous gradient is fine: it is the same values as its contiguous copy.
  Tensor p1 = Tensor::ones({2, 2}), p2 = Tensor::ones({2, 2});
  Tensor gv = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  adam_step_(p1, gv.mT(), Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), a);
  adam_step_(p2, gv.mT().contiguous(), Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), a);
  EXPECT_TRUE(same_bits<float>(p1, p2));
}

// The kernel has a threaded path (large tensors), AVX2 and SSE2 paths and a scalar tail; all must
// give the same bits as element-by-element updates, so results never depend on sizes, threads or CPUs.
// n above 2^20 takes the threaded path; odd sizes give every path a tail.
template <class T>
void check_kernel_paths(DType dt, bool decoupled, double wd, int64_t n) {
  AdamArgs a;
  a.lr = 3e-3;
  a.weight_decay = wd;
  a.decoupled = decoupled;
  Tensor p0 = randn({n}, 1, 0, dt), m0 = mul(randn({n}, 2, 0, dt), 0.1), v0 = abs(randn({n}, 3, 0, dt));
  Tensor g = randn({n}, 4, 0, dt);
  a.step = 7;
  Tensor pw = p0.clone(), mw = m0.clone(), vw = v0.clone();
  adam_step_(pw, g, mw, vw, a);  // whole: threaded
  Tensor pc = p0.clone(), mc = m0.clone(), vc = v0.clone();
  // Chunks of 8k + 5 elements, one thread: AVX2 (where the CPU has it), then one SSE vector
  // of 4 floats, then a scalar tail.
  for (int64_t s = 0; s < n; s += 10005) {
    int64_t len = std::min<int64_t>(10005, n - s);
    adam_step_(pc.narrow(0, s, len), g.narrow(0, s, len), mc.narrow(0, s, len), vc.narrow(0, s, len), a);
  }
  Tensor ps = p0.narrow(0, 0, 9).clone(), ms = m0.narrow(0, 0, 9).clone(), vs = v0.narrow(0, 0, 9).clone();
  for (int64_t i = 0; i < 9; ++i)  // single elements: scalar only
    adam_step_(ps.narrow(0, i, 1), g.narrow(0, i, 1), ms.narrow(0, i, 1), vs.narrow(0, i, 1), a);
  for (const auto& [x, y] : {std::pair{pw, pc}, std::pair{mw, mc}, std::pair{vw, vc}}) EXPECT_TRUE(same_bits<T>(x, y));
  EXPECT_TRUE(same_bits<T>(pw.narrow(0, 0, 9), ps));
  EXPECT_TRUE(same_bits<T>(mw.narrow(0, 0, 9), ms));
  EXPECT_TRUE(same_bits<T>(vw.narrow(0, 0, 9), vs));
  EXPECT_FALSE(same_bits<T>(pw, p0));
}

TEST(AdamStep, ThreadedVectorAndScalarPathsAgreeBitForBit) {
  const int64_t threaded = (int64_t{1} << 20) + 5, single = 30011;
  check_kernel_paths<float>(DType::F32, false, 0.0, threaded);
  check_kernel_paths<float>(DType::F32, false, 0.1, single);
  check_kernel_paths<float>(DType::F32, true, 0.1, single);
  check_kernel_paths<double>(DType::F64, false, 0.0, single);
  check_kernel_paths<double>(DType::F64, true, 0.01, threaded);
}

// ---- schedules

TEST(LrSchedule, ConstantAndLinearWarmup) {
  auto c = optim::LrSchedule::constant(0.3);
  EXPECT_EQ(c(1), 0.3);
  EXPECT_EQ(c(1000000), 0.3);
  auto w = optim::LrSchedule::linear_warmup(0.4, 4);
  EXPECT_DOUBLE_EQ(w(1), 0.1);
  EXPECT_DOUBLE_EQ(w(2), 0.2);
  EXPECT_DOUBLE_EQ(w(4), 0.4);
  EXPECT_EQ(w(5), 0.4);
  EXPECT_EQ(optim::LrSchedule::linear_warmup(0.4, 0)(1), 0.4);
}

TEST(LrSchedule, CosineWithWarmup) {
  auto s = optim::LrSchedule::cosine(1.0, 10, 110, 0.1);
  EXPECT_DOUBLE_EQ(s(5), 0.5);
  EXPECT_DOUBLE_EQ(s(10), 1.0);
  EXPECT_NEAR(s(60), 0.55, 1e-15);  // half way down: the mean of lr and min_lr
  EXPECT_NEAR(s(35), 0.1 + 0.45 * (1 + std::cos(std::numbers::pi / 4)), 1e-15);
  EXPECT_DOUBLE_EQ(s(110), 0.1);
  EXPECT_DOUBLE_EQ(s(500), 0.1);
  for (int64_t k = 11; k <= 110; ++k) EXPECT_LT(s(k), s(k - 1)) << k;
  EXPECT_LR_ERROR(optim::LrSchedule::cosine(1.0, 10, 10), "must exceed warmup_steps");
  EXPECT_LR_ERROR(optim::LrSchedule::cosine(1.0, 0, 10, 2.0), "min_lr");
  EXPECT_LR_ERROR(optim::LrSchedule::constant(-1.0), "learning rate");
  EXPECT_LR_ERROR(s(0), "1-based");
  EXPECT_EQ(s.str(), "cosine(lr=1, warmup=10, total=110, min_lr=0.1)");
}

// Plain SGD moves p by exactly -lr_k * g, so the rate each step used can be read back.
TEST(LrSchedule, DrivesTheOptimizerStepByStep) {
  NamedParameters ps{{"p", Tensor::zeros({1}, DType::F64)}};
  optim::SGD sgd(ps, {.lr = 123.0});
  auto s = optim::LrSchedule::linear_warmup(0.5, 4);
  sgd.set_schedule(s);
  double prev = 0;
  for (int64_t k = 1; k <= 6; ++k) {
    EXPECT_EQ(sgd.lr(), s(k));
    ps[0].second.set_grad(Tensor::from_vector(std::vector<double>{-1.0}, {1}));
    sgd.step();
    double now = ps[0].second.item();
    EXPECT_DOUBLE_EQ(now - prev, s(k));
    prev = now;
  }
  sgd.set_lr(0.25);
  EXPECT_EQ(sgd.lr(), 0.25);
}

// ---- the training guard's scan (optim/finite.h)

// Tensors from 2^14 elements are scanned by every thread, each its part; the answer must be the one
// a serial scan gives: the first tensor in order that holds a bad value, and that value's first index,
// wherever it lies (either thread's part, a part's first or last element, a small tensor before it).
TEST(FirstNonFinite, ThreadedScanReportsTheFirstTensorAndElement) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const int64_t big = (int64_t{1} << 16) + 21;  // parts of (n + 15) / 16 units of 16
    auto fresh = [&] {
      return NamedParameters{{"small", Tensor::zeros({7})},
                             {"big", Tensor::zeros({big})},
                             {"wide", Tensor::zeros({300, 128}, DType::F64)},
                             {"last", Tensor::zeros({1 << 14})}};
    };
    EXPECT_FALSE(optim::first_non_finite(fresh()).has_value()) << threads;
    const int64_t units = (big + 15) / 16;
    std::vector<int64_t> places{0, big / 2 + 3, big - 1};
    for (int p = 1; p < threads; ++p) {  // either side of each boundary between two threads' parts
      places.push_back(units * p / threads * 16 - 1);
      places.push_back(units * p / threads * 16);
    }
    for (int64_t at : places) {
      NamedParameters ps = fresh();
      ps[1].second.data<float>()[at] = nan;
      auto bad = optim::first_non_finite(ps);
      ASSERT_TRUE(bad.has_value()) << threads << " " << at;
      EXPECT_EQ(bad->first, "big");
      EXPECT_EQ(bad->second, at);
      ps[1].second.data<float>()[big - 1] = inf;  // a later bad element is not the one reported
      EXPECT_EQ(optim::first_non_finite(ps), std::make_pair(std::string("big"), at));
      ps[0].second.data<float>()[6] = inf;  // an earlier small tensor comes first
      EXPECT_EQ(optim::first_non_finite(ps), std::make_pair(std::string("small"), int64_t{6}));
    }
    NamedParameters ps = fresh();
    ps[2].second.data<double>()[300 * 128 - 1] = -std::numeric_limits<double>::infinity();
    ps[3].second.data<float>()[0] = nan;
    EXPECT_EQ(optim::first_non_finite(ps), std::make_pair(std::string("wide"), int64_t{300 * 128 - 1}));
    // A non-contiguous view is scanned in row-major order by the serial path.
    Tensor t = Tensor::zeros({256, 128});
    t.data<float>()[5 * 128 + 200 / 128] = nan;  // row 5, column 1 -> element 1 * 256 + 5 of t.mT()
    EXPECT_EQ(optim::first_non_finite(NamedParameters{{"t", t.mT()}}), std::make_pair(std::string("t"), int64_t{261}));
  }
  set_num_threads(0);
}

// ---- clipping

TEST(ClipGradNorm, ScalesAllGradientsTogether) {
  Tensor a = Tensor::zeros({2}, DType::F64), b = Tensor::zeros({1}, DType::F64), c = Tensor::zeros({3}, DType::F64);
  a.set_grad(Tensor::from_vector(std::vector<double>{3, 4}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{-12}, {1}));
  // c has no gradient and is skipped.
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm({a, b, c}, 100.0), 13.0);  // sqrt(9 + 16 + 144), unclipped
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{3, 4}));
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm({a, b, c}, 6.5), 13.0);
  double f = 6.5 / (13.0 + 1e-6);
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{3 * f, 4 * f}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{-12 * f}));
  EXPECT_FALSE(c.grad().defined());
  // Max norm and 1-norm.
  a.set_grad(Tensor::from_vector(std::vector<double>{3, -4}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<double>{-12}, {1}));
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm({a, b}, 100.0, optim::kInfNorm), 12.0);
  EXPECT_DOUBLE_EQ(optim::clip_grad_norm({a, b}, 100.0, 1.0), 19.0);
  EXPECT_EQ(optim::clip_grad_norm({c}, 1.0), 0.0);
}

// A large gradient (3M elements: the ops split it over the threads) and a strided one: the 2-, 1-
// and max-norm against an f64 sum, and the scaled values exactly grad · max_norm / (norm + 1e-6).
TEST(ClipGradNorm, LargeAndStridedGradients) {
  const int64_t n = 3 * (int64_t{1} << 20) + 12345;
  Tensor a = Tensor::zeros({n}), b = Tensor::zeros({64, 96});
  auto reset = [&] {
    a.set_grad(randn({n}, 7));
    b.set_grad(randn({96, 64}, 8).mT());  // strided
  };
  reset();
  const std::vector<float> ga = a.grad().to_vector<float>(), gb = b.grad().contiguous().to_vector<float>();
  double sq = 0, l1 = 0, mx = 0;
  for (const std::vector<float>* v : {&ga, &gb})
    for (float x : *v) sq += double{x} * x, l1 += std::abs(double{x}), mx = std::max(mx, std::abs(double{x}));
  EXPECT_NEAR(optim::clip_grad_norm({a, b}, 1e9), std::sqrt(sq), 1e-6 * std::sqrt(sq));
  EXPECT_NEAR(optim::clip_grad_norm({a, b}, 1e9, 1.0), l1, 1e-6 * l1);
  EXPECT_EQ(optim::clip_grad_norm({a, b}, 1e9, optim::kInfNorm), mx);
  const double norm = optim::clip_grad_norm({a, b}, 2.0);
  const float f = static_cast<float>(2.0 / (norm + 1e-6));
  const std::vector<float> ca = a.grad().to_vector<float>(), cb = b.grad().contiguous().to_vector<float>();
  for (int64_t i : {int64_t{0}, int64_t{1} << 20, n - 1})
    EXPECT_EQ(ca[static_cast<size_t>(i)], ga[static_cast<size_t>(i)] * f) << i;
  for (size_t i : {size_t{0}, size_t{4000}, gb.size() - 1}) EXPECT_EQ(cb[i], gb[i] * f) << i;
  EXPECT_NEAR(optim::clip_grad_norm({a, b}, 1e9), 2.0, 1e-5);
}

TEST(ClipGradNorm, NonFiniteNormLeavesGradientsAlone) {
  Tensor a = Tensor::zeros({2});
  a.set_grad(Tensor::from_vector(std::vector<float>{INFINITY, 1.0f}, {2}));
  EXPECT_TRUE(std::isinf(optim::clip_grad_norm({a}, 1.0)));
  EXPECT_EQ(a.grad().to_vector<float>()[1], 1.0f);
  EXPECT_LR_ERROR(optim::clip_grad_norm({a}, -1.0), "max_norm");
  EXPECT_LR_ERROR(optim::clip_grad_norm({a}, 1.0, 0.0), "norm_type");
}

}  // namespace
}  // namespace lowrank
