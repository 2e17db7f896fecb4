// IEEE binary16 (f16) and bfloat16 (bf16) <-> f32 conversions, bit-exact: widening is exact, and
// narrowing rounds to nearest-even (NaN stays NaN, overflow gives infinity), as PyTorch and NumPy do.
#pragma once
#include <cstdint>

namespace lowrank::io {

float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

}  // namespace lowrank::io
