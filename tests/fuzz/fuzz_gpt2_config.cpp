// libFuzzer target: GPT-2 config.json (ours and Hugging Face's keys). A config that parses must be
// one the model can be built from without overflowing a size.
#include "models/gpt2/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lowrank::fuzz::expect_clean([&] {
    const auto c = lowrank::models::gpt2::Config::from_json(std::string(reinterpret_cast<const char*>(data), size));
    int64_t words = 0;
    if (__builtin_mul_overflow(c.vocab_size, c.n_embd, &words) || c.num_parameters() <= 0) std::abort();
    if (lowrank::models::gpt2::Config::from_json(c.to_json()) != c) std::abort();  // round trip
  });
  return 0;
}
