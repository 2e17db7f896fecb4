// safetensors read/write (https://github.com/huggingface/safetensors format): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__},
// then the raw bytes. Writes are atomic (temp file + rename).
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace lowrank::io {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;        // on the CPU; F16/BF16 are widened to f32
  std::map<std::string, std::string> metadata;  // the "__metadata__" object
};

// Throws lowrank::Error naming the file and the problem for any malformed input.
SafetensorsFile load_safetensors(const std::string& path);
// Tensors may live on any device and have any layout; they are written contiguous, in name order.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a crash
// never leaves a half-written file.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace lowrank::io
