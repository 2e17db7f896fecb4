// Finiteness and sign scans: exponent-bit tests on the host (vectorised), a device sum first.
#include "optim/finite.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/cpu_features.h"
#include "core/ops.h"
#include "core/threads.h"

namespace lowrank::optim {
namespace {

// A float is NaN or infinite exactly when its exponent bits are all ones; testing the bits (rather
// than std::isfinite per element) lets the scan run a vector at a time.

#if defined(__x86_64__) && defined(__GNUC__)
// Whether any of p[0, n) has every bit of `mask` set: four 32-byte vectors an iteration into two
// accumulators. (The portable count below is one 16-byte vector an iteration on one dependency
// chain: 9-17 us over the MLP's 118K parameters on one thread, against 5.5-5.9 us for the whole
// guard scan with this, bench/optim_bench BM_GuardScanMlp.)
template <class Bits>
[[gnu::target("avx2")]] inline __m256i all_ones_at(const Bits* p, __m256i mask) {
  const __m256i x = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), mask);
  if constexpr (sizeof(Bits) == 4)
    return _mm256_cmpeq_epi32(x, mask);
  else
    return _mm256_cmpeq_epi64(x, mask);
}

template <class Bits>
[[gnu::target("avx2")]] bool any_all_ones_avx2(const Bits* p, int64_t n, Bits mask) {
  constexpr int64_t kLanes = 32 / static_cast<int64_t>(sizeof(Bits));
  __m256i m;
  if constexpr (sizeof(Bits) == 4)
    m = _mm256_set1_epi32(static_cast<int>(mask));
  else
    m = _mm256_set1_epi64x(static_cast<long long>(mask));
  __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    a = _mm256_or_si256(a, _mm256_or_si256(all_ones_at(p + i, m), all_ones_at(p + i + kLanes, m)));
    b = _mm256_or_si256(b, _mm256_or_si256(all_ones_at(p + i + 2 * kLanes, m), all_ones_at(p + i + 3 * kLanes, m)));
  }
  for (; i + kLanes <= n; i += kLanes) a = _mm256_or_si256(a, all_ones_at(p + i, m));
  a = _mm256_or_si256(a, b);
  bool any = !_mm256_testz_si256(a, a);
  for (; i < n; ++i) any |= (p[i] & mask) == mask;
  return any;
}
#endif

template <class Bits>
bool any_all_ones(const Bits* p, int64_t n, Bits mask) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu_has_avx2()) return any_all_ones_avx2(p, n, mask);
#endif
  // A count in the element's own width (compare, subtract: one vector op each); a bool |= kept
  // GCC's loop scalar, 12% of a train-mlp step. n stays within a block, so the count cannot wrap.
  Bits bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += static_cast<Bits>((p[i] & mask) == mask);
  return bad != 0;
}

template <class Bits>
std::optional<int64_t> scan_exponent(const void* data, int64_t n, Bits exponent_mask) {
  const auto* p = static_cast<const Bits*>(data);
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    if (!any_all_ones(p + start, end - start, exponent_mask)) continue;
    for (int64_t i = start; i < end; ++i)
      if ((p[i] & exponent_mask) == exponent_mask) return i;
  }
  return std::nullopt;
}

// Host tensors from this many elements are scanned by all the pool's threads, each its own part in
// units of kScanUnit elements: the parts kernels/cpu/adam.cpp gives each thread of the update just
// before, so every thread reads what lies in its own cache. One thread scanning the MLP's
// parameters after each step read the other core's half across: ~32 us of a ~190 us train-mlp step
// at 2 threads (epochs 0.39-0.40 s against 0.32-0.35 s without the scan).
constexpr int64_t kParallelScanMin = int64_t{1} << 14, kScanUnit = 16;

Tensor host_contiguous(const Tensor& t) {
  Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
  return h.is_contiguous() ? h : h.contiguous();
}

}  // namespace

std::optional<int64_t> first_non_finite(const Tensor& t) {
  LR_CHECK(t.defined(), "first_non_finite: undefined tensor");
  LR_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "first_non_finite: {} {} is not f32/f64",
           dtype_name(t.dtype()), t.shape());
  NoGradGuard no_grad;
  const Tensor h = host_contiguous(t);
  if (h.dtype() == DType::F32) return scan_exponent<uint32_t>(h.raw_data(), h.numel(), 0x7F800000u);
  return scan_exponent<uint64_t>(h.raw_data(), h.numel(), 0x7FF0000000000000ull);
}

std::optional<std::pair<std::string, int64_t>> first_non_finite(const NamedParameters& tensors) {
  NoGradGuard no_grad;
  // Large contiguous host tensors first, in one parallel region: each thread scans its own part of
  // each, the part it updated in the optimizer step before (see kParallelScanMin).
  std::vector<size_t> large;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    if (t.defined() && t.device().is_cpu() && t.is_contiguous() && t.numel() >= kParallelScanMin &&
        (t.dtype() == DType::F32 || t.dtype() == DType::F64))
      large.push_back(i);
  }
  const int parts = std::max(1, num_threads());
  std::vector<uint8_t> part_bad(large.size() * static_cast<size_t>(parts), 0);
  if (!large.empty())
    parallel_ranges(parts, true, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        for (size_t j = 0; j < large.size(); ++j) {
          const Tensor& t = tensors[large[j]].second;
          const int64_t n = t.numel(), units = (n + kScanUnit - 1) / kScanUnit;
          const int64_t b = units * p / parts * kScanUnit, e = std::min(n, units * (p + 1) / parts * kScanUnit);
          if (b >= e) continue;
          const bool bad =
              t.dtype() == DType::F32
                  ? scan_exponent<uint32_t>(t.data<float>() + b, e - b, 0x7F800000u).has_value()
                  : scan_exponent<uint64_t>(t.data<double>() + b, e - b, 0x7FF0000000000000ull).has_value();
          part_bad[j * static_cast<size_t>(parts) + static_cast<size_t>(p)] = bad;
        }
    });
  size_t next_large = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    if (next_large < large.size() && large[next_large] == i) {
      const auto flags = part_bad.begin() + static_cast<std::ptrdiff_t>(next_large++ * static_cast<size_t>(parts));
      if (std::find(flags, flags + parts, uint8_t{1}) == flags + parts) continue;
    }
    if (!t.defined() || t.numel() == 0) continue;
    if (!t.device().is_cpu() && std::isfinite(sum(t).item())) continue;
    if (auto at = first_non_finite(t)) return std::make_pair(name, *at);
  }
  return std::nullopt;
}

std::optional<int64_t> first_negative(const Tensor& t) {
  LR_CHECK(t.defined() && (t.dtype() == DType::F32 || t.dtype() == DType::F64),
           "first_negative: not an f32/f64 tensor");
  NoGradGuard no_grad;
  const Tensor h = host_contiguous(t);
  const int64_t n = h.numel();
  if (h.dtype() == DType::F32) {
    const auto* p = static_cast<const float*>(h.raw_data());
    for (int64_t i = 0; i < n; ++i)
      if (p[i] < 0.0f) return i;
  } else {
    const auto* p = static_cast<const double*>(h.raw_data());
    for (int64_t i = 0; i < n; ++i)
      if (p[i] < 0.0) return i;
  }
  return std::nullopt;
}

}  // namespace lowrank::optim
