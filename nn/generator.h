// Generator: a Philox seed plus a running counter offset, so every random draw in nn/ (initial
// weights, dropout masks) is a pure function of (seed, offset) and its state is two integers.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lowrank::nn {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}

  uint64_t seed() const { return seed_; }
  // The next unused Philox counter; saving (seed, offset) and restoring it replays the same draws.
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }

  // Reserves the counters that n elements use (4 per counter, core/rng.h) and returns the first.
  uint64_t take(int64_t n);

  // Uniform in [low, high) and normal(mean, stddev), drawn on `device` with core's rand/randn.
  Tensor uniform(const Shape& shape, double low, double high, DType dtype = DType::F32, Device device = Device::cpu());
  Tensor normal(const Shape& shape, double mean, double stddev, DType dtype = DType::F32,
                Device device = Device::cpu());

 private:
  uint64_t seed_;
  uint64_t offset_;
};

// The generator layers use when none is passed; manual_seed() resets it to (seed, 0).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace lowrank::nn
