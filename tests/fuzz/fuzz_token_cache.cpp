// libFuzzer target: the GPT-2 token cache reader. The key it is asked for is the one the file
// claims (bytes 16..23), so the fuzzer gets past the key check into the counts and the data.
#include <cstring>

#include "models/gpt2/text_data.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t key = 0;
  if (size >= 24) std::memcpy(&key, data + 16, 8);
  lowrank::fuzz::MemFile file(data, size);
  lowrank::fuzz::expect_clean([&] {
    lowrank::models::gpt2::TokenData d;
    std::string why;
    if (lowrank::models::gpt2::read_token_cache(file.path(), key, d, why)) {
      // What a reader accepts must be usable: counts that make sense and say what they hold.
      if (d.documents <= 0 || d.val_documents < 0 || d.val_documents > d.documents || d.text_bytes < 0) std::abort();
      if (static_cast<uint64_t>(d.documents) > d.train.size() + d.val.size()) std::abort();
    } else if (why.empty()) {
      std::abort();
    }
  });
  return 0;
}
