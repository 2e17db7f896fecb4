// Element types. Compute happens in f32 and f64; integer types hold labels, ids and masks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lowrank {

enum class DType : uint8_t { F32, F64, I64, I32, U8, BF16, F16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "f64", ...
bool is_floating(DType t);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}

}  // namespace lowrank
