// Generator: seed + counter offset over core's Philox rand/randn.
#include "nn/generator.h"

#include "core/autograd.h"
#include "core/ops.h"

namespace lowrank::nn {

uint64_t Generator::take(int64_t n) {
  LR_CHECK(n >= 0, "Generator::take: negative element count {}", n);
  uint64_t start = offset_;
  offset_ += (static_cast<uint64_t>(n) + 3) / 4;
  return start;
}

Tensor Generator::uniform(const Shape& shape, double low, double high, DType dtype, Device device) {
  LR_CHECK(high >= low, "Generator::uniform: high {} is below low {}", high, low);
  NoGradGuard no_grad;
  Tensor u = rand(shape, seed_, take(shape_numel(shape)), dtype, device);
  if (low == 0.0 && high == 1.0) return u;
  return add(mul(u, high - low), low);
}

Tensor Generator::normal(const Shape& shape, double mean, double stddev, DType dtype, Device device) {
  LR_CHECK(stddev >= 0, "Generator::normal: negative stddev {}", stddev);
  NoGradGuard no_grad;
  Tensor z = randn(shape, seed_, take(shape_numel(shape)), dtype, device);
  if (mean == 0.0 && stddev == 1.0) return z;
  return add(mul(z, stddev), mean);
}

Generator& default_generator() {
  static Generator g;
  return g;
}

void manual_seed(uint64_t seed) {
  default_generator().set_state(seed, 0);
}

}  // namespace lowrank::nn
