// libFuzzer target: the IDX reader (raw and gzip) on arbitrary bytes.
#include <string_view>

#include "core/io/idx.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowrank::fuzz::MemFile file(data, size);
  lowrank::fuzz::expect_clean([&] {
    lowrank::Tensor t = lowrank::io::read_idx(file.path());
    if (!t.defined() || t.dim() < 1) std::abort();
  });
  return 0;
}
