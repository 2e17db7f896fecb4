// Fills the CPU slots of the kernel table (called once from backend_table()).
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace lowrank {

void register_cpu_kernels(Backend& t) {
  t.unary = cpu::unary;
  t.binary = cpu::binary;
  t.copy = cpu::copy;
  t.fill = cpu::fill;
  t.reduce = cpu::reduce;
  t.argmax = cpu::argmax;
  t.gemm = cpu::gemm;
  t.random = cpu::random;
  t.to_host = [](const void* src, void* dst, size_t n, Device) { std::memcpy(dst, src, n); };
  t.from_host = [](const void* src, void* dst, size_t n, Device) { std::memcpy(dst, src, n); };
  t.synchronize = [](Device) {};
  t.attention_forward = cpu::attention_forward;
  t.attention_backward = cpu::attention_backward;
  cpu::register_nn_kernels(t);
}

}  // namespace lowrank
