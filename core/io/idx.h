// IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw: a big-endian header
// (two zero bytes, a type byte, the rank, one u32 per dimension) followed by the elements.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "core/tensor.h"

namespace lowrank::io {

// Reads `path` (gzip when it starts with the gzip magic, raw otherwise) into a CPU tensor of the
// header's shape. Element types: u8 (0x08) stays U8; i8 (0x09), i16 (0x0B) and i32 (0x0C) become
// I32; f32 (0x0D) F32; f64 (0x0E) F64; big-endian values are converted to host order.
// A bad magic or type, a truncated file, or bytes after the last element throw lowrank::Error
// naming the file.
Tensor read_idx(const std::string& path);

// The same, for bytes already in memory; `source` names them in error messages.
Tensor decode_idx(std::string_view bytes, const std::string& source);

// The IDX encoding of a U8, I32, F32 or F64 tensor (any layout), uncompressed.
std::string encode_idx(const Tensor& t);

}  // namespace lowrank::io
