// libFuzzer target: the safetensors reader on arbitrary file contents.
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowrank::fuzz::MemFile file(data, size);
  lowrank::fuzz::expect_clean([&] {
    lowrank::io::SafetensorsFile f = lowrank::io::load_safetensors(file.path());
    for (const auto& [name, t] : f.tensors)
      if (t.nbytes() != t.numel() * static_cast<int64_t>(lowrank::dtype_size(t.dtype()))) std::abort();
  });
  return 0;
}
