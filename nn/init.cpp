// Weight initialisers: the Keras and PyTorch formulas over nn::Generator draws.
#include "nn/init.h"

#include <cmath>

#include "core/autograd.h"

namespace lowrank::nn {

Init Init::parse(const std::string& name) {
  if (name == "zeros") return zeros();
  if (name == "ones") return ones();
  if (name == "uniform") return uniform();
  if (name == "normal") return normal();
  if (name == "glorot_uniform") return glorot_uniform();
  if (name == "glorot_normal") return glorot_normal();
  if (name == "kaiming_uniform") return kaiming_uniform();
  if (name == "kaiming_normal") return kaiming_normal();
  LR_FAIL(
      "init: unknown initialiser '{}' (expected zeros, ones, uniform, normal, glorot_uniform, glorot_normal, "
      "kaiming_uniform or kaiming_normal)",
      name);
}

std::string Init::name() const {
  switch (kind) {
    case InitKind::Zeros:
      return "zeros";
    case InitKind::Ones:
      return "ones";
    case InitKind::Constant:
      return "constant";
    case InitKind::Uniform:
      return "uniform";
    case InitKind::Normal:
      return "normal";
    case InitKind::GlorotUniform:
      return "glorot_uniform";
    case InitKind::GlorotNormal:
      return "glorot_normal";
    case InitKind::KaimingUniform:
      return "kaiming_uniform";
    case InitKind::KaimingNormal:
      return "kaiming_normal";
  }
  return "?";
}

Fans keras_fans(const Shape& shape) {
  if (shape.empty()) return {1, 1};
  if (shape.size() == 1) return {shape[0], shape[0]};
  int64_t receptive = 1;
  for (size_t i = 0; i + 2 < shape.size(); ++i) receptive *= shape[i];
  return {shape[shape.size() - 2] * receptive, shape.back() * receptive};
}

Tensor initialize(const Init& init, const Shape& shape, Fans fans, Generator& gen, DType dtype, Device device) {
  NoGradGuard no_grad;
  LR_CHECK(fans.in > 0 && fans.out > 0, "init {}: fans must be positive, got fan_in {} fan_out {} for shape {}",
           init.name(), fans.in, fans.out, shape);
  const double fi = static_cast<double>(fans.in), fo = static_cast<double>(fans.out);
  switch (init.kind) {
    case InitKind::Zeros:
      return Tensor::zeros(shape, dtype, device);
    case InitKind::Ones:
      return Tensor::ones(shape, dtype, device);
    case InitKind::Constant:
      return Tensor::full(shape, init.a, dtype, device);
    case InitKind::Uniform:
      return gen.uniform(shape, -init.a, init.a, dtype, device);
    case InitKind::Normal:
      return gen.normal(shape, init.b, init.a, dtype, device);
    case InitKind::GlorotUniform: {
      double limit = std::sqrt(6.0 / (fi + fo));
      return gen.uniform(shape, -limit, limit, dtype, device);
    }
    case InitKind::GlorotNormal:
      return gen.normal(shape, 0.0, std::sqrt(2.0 / (fi + fo)), dtype, device);
    case InitKind::KaimingUniform: {
      double limit = std::sqrt(6.0 / ((1.0 + init.a * init.a) * fi));
      return gen.uniform(shape, -limit, limit, dtype, device);
    }
    case InitKind::KaimingNormal:
      return gen.normal(shape, 0.0, std::sqrt(2.0 / ((1.0 + init.a * init.a) * fi)), dtype, device);
  }
  LR_FAIL("init: unhandled initialiser kind {}", static_cast<int>(init.kind));
}

}  // namespace lowrank::nn
