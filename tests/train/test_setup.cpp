// What --threads 0 resolves to (tools/train/setup.h): the cores this process may use, shared out
// among the ranks mpirun started on this host.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "tools/train/setup.h"

namespace {

constexpr const char* kLocalSize = "OMPI_COMM_WORLD_LOCAL_SIZE";

// Puts the variable back as it was when the test ends.
struct EnvGuard {
  std::optional<std::string> saved;
  EnvGuard() {
    if (const char* v = std::getenv(kLocalSize)) saved = v;
  }
  ~EnvGuard() {
    if (saved)
      setenv(kLocalSize, saved->c_str(), 1);
    else
      unsetenv(kLocalSize);
  }
};

}  // namespace

TEST(Setup, ThreadsZeroSharesTheCoresAmongTheRanksOfAHost) {
  EnvGuard guard;
  unsetenv(kLocalSize);
  const int all = lowrank::train::threads_per_process();
  EXPECT_GE(all, 1);
  EXPECT_LE(all, lowrank::train::kMaxThreads);
  setenv(kLocalSize, "2", 1);
  EXPECT_EQ(lowrank::train::threads_per_process(), std::max(1, all / 2));
  setenv(kLocalSize, "100000", 1);  // more ranks than cores: still one thread each
  EXPECT_EQ(lowrank::train::threads_per_process(), 1);
  setenv(kLocalSize, "not a number", 1);
  EXPECT_EQ(lowrank::train::threads_per_process(), all);
}
