// Random tensors from the counter-based Philox generator (same numbers on CPU and CUDA).
#include "core/ops/op_util.h"

namespace lowrank {
namespace {
Tensor random_tensor(RandomKind kind, const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  LR_CHECK(dtype == DType::F32 || dtype == DType::F64, "rand: needs f32 or f64, got {}", dtype_name(dtype));
  Tensor out = Tensor::empty(shape, dtype, device);
  if (out.numel() > 0) kernel(device, &Backend::random, OpKind::Random)(kind, seed, offset, out);
  return out;
}
}  // namespace

Tensor rand(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return random_tensor(RandomKind::Uniform, shape, seed, offset, dtype, device);
}
Tensor randn(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return random_tensor(RandomKind::Normal, shape, seed, offset, dtype, device);
}

}  // namespace lowrank
