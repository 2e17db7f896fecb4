// libFuzzer target: the einsum equation parser. What it accepts must be self-consistent: two
// operands of distinct letters, and an output whose letters come from them.
#include <cctype>
#include <string>

#include "core/ops/einsum_equation.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // equations are short; longer inputs only slow the search down
  const std::string eq(reinterpret_cast<const char*>(data), size);
  lowrank::fuzz::expect_clean([&] {
    const lowrank::EinsumEquation e = lowrank::parse_einsum_equation(eq);
    for (const std::string& part : {e.in[0], e.in[1], e.out})
      for (size_t i = 0; i < part.size(); ++i)
        if (!std::isalpha(static_cast<unsigned char>(part[i])) || part.find(part[i], i + 1) != std::string::npos)
          std::abort();
    for (char c : e.out)
      if (e.in[0].find(c) == std::string::npos && e.in[1].find(c) == std::string::npos) std::abort();
  });
  return 0;
}
