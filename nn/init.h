// Weight initialisers (Keras and PyTorch defaults), drawn from an nn::Generator so that a seed
// fixes every initial weight bit for bit.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "nn/generator.h"

namespace lowrank::nn {

enum class InitKind : uint8_t {
  Zeros,
  Ones,
  Constant,        // value = a
  Uniform,         // U(-a, a)
  Normal,          // N(b, a^2): a = stddev, b = mean
  GlorotUniform,   // U(-l, l), l = sqrt(6 / (fan_in + fan_out)): Keras' default kernel initialiser
  GlorotNormal,    // N(0, 2 / (fan_in + fan_out)), untruncated (Keras truncates)
  KaimingUniform,  // U(-l, l), l = sqrt(6 / ((1 + a^2) fan_in)); a = sqrt(5) is PyTorch's Linear default
  KaimingNormal,   // N(0, 2 / ((1 + a^2) fan_in))
};

struct Init {
  InitKind kind = InitKind::GlorotUniform;
  double a = 0.0;
  double b = 0.0;

  static Init zeros() { return {InitKind::Zeros}; }
  static Init ones() { return {InitKind::Ones}; }
  static Init constant(double value) { return {InitKind::Constant, value}; }
  static Init uniform(double limit = 0.05) { return {InitKind::Uniform, limit}; }  // Keras RandomUniform
  static Init normal(double stddev = 0.05, double mean = 0.0) { return {InitKind::Normal, stddev, mean}; }
  static Init glorot_uniform() { return {InitKind::GlorotUniform}; }
  static Init glorot_normal() { return {InitKind::GlorotNormal}; }
  // a is the negative slope of the rectifier; the default sqrt(5) gives PyTorch's nn.Linear
  // weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is also its bias bound.
  static Init kaiming_uniform(double a = 2.23606797749979) { return {InitKind::KaimingUniform, a}; }
  static Init kaiming_normal(double a = 0.0) { return {InitKind::KaimingNormal, a}; }

  // "zeros", "ones", "uniform", "normal", "glorot_uniform", "glorot_normal", "kaiming_uniform",
  // "kaiming_normal" (default parameters); throws naming the accepted names otherwise.
  static Init parse(const std::string& name);
  std::string name() const;
};

// Keras' fan rule: [in, out] -> (in, out); rank > 2 multiplies both by the product of the
// leading (receptive-field) axes; rank 1 -> (n, n); rank 0 -> (1, 1).
struct Fans {
  int64_t in = 1, out = 1;
};
Fans keras_fans(const Shape& shape);

// A new tensor of `shape` drawn from `init`; the fans are passed explicitly because a layer knows
// which axes are its inputs (Dense stores [out, in], the transpose of Keras' [in, out]).
Tensor initialize(const Init& init, const Shape& shape, Fans fans, Generator& gen, DType dtype = DType::F32,
                  Device device = Device::cpu());

}  // namespace lowrank::nn
