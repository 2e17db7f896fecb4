// libFuzzer target: the vocabulary readers (encoder.json/vocab.json + vocab.bpe/merges.txt). The
// input is split at its first NUL byte into the JSON and the merge list.
#include <string_view>

#include "models/gpt2/bpe_files.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view vocab = all.substr(0, nul);
  const std::string_view merges = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1);
  lowrank::fuzz::expect_clean([&] { lowrank::models::gpt2::parse_bpe_files(vocab, merges, "vocab", "merges"); });
  return 0;
}
