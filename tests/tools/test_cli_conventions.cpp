// The conventions every `lowrank` subcommand shares (README "Conventions"): the --threads defaults
// (kDefaultThreads, one per core, for all of them), the same --device, --json and
// --quiet flags, and exit code 2 for bad usage.
#include <cctype>
#include <optional>
#include <string>

#include "support/tool_runner.h"
#include "tools/cli/flags.h"

namespace {

using lowrank::test::ToolResult;

class CliConventions : public lowrank::test::ToolTest {};

const char* const kTrainingLike[] = {"train-mlp",     "lora-experiment", "gpt2 train",   "gpt2 eval",
                                     "gpt2 generate", "gpt2 lora",       "gpt2 classify"};

TEST_F(CliConventions, EverySubcommandHasTheSharedFlagsAndItsThreadsDefault) {
  // The help line of --threads ends in its default, "=N" (no std::regex: GCC 12 warns inside it at -O1).
  auto threads_default = [](const std::string& help) -> std::optional<int> {
    const size_t at = help.find("--threads");
    if (at == std::string::npos) return std::nullopt;
    const size_t eol = help.find('\n', at), eq = help.rfind('=', eol);
    if (eq == std::string::npos || eq < at || eq + 1 >= help.size() ||
        !std::isdigit(static_cast<unsigned char>(help[eq + 1])))
      return std::nullopt;
    return std::stoi(help.substr(eq + 1));
  };
  for (const char* sub : kTrainingLike) {
    ToolResult help = run(std::string(sub) + " --help");
    ASSERT_EQ(help.rc, 0) << sub;
    const std::optional<int> d = threads_default(help.out);
    ASSERT_TRUE(d.has_value()) << sub << ":\n" << help.out;
    EXPECT_EQ(*d, lowrank::cli::kDefaultThreads) << sub;
    for (const char* flag : {"--device", "--json", "--quiet"})
      EXPECT_NE(help.out.find(flag), std::string::npos) << sub << " lacks " << flag;
  }
}

TEST_F(CliConventions, BadSharedFlagValuesAreUsageErrors) {
  for (const char* sub : kTrainingLike) {
    EXPECT_EQ(run(std::string(sub) + " --threads 100000").rc, 2) << sub;
    EXPECT_EQ(run(std::string(sub) + " --device tpu").rc, 2) << sub;
  }
  // Ranges read as people write them, not as the type's limits.
  ToolResult r = run("train-mlp --epochs 0");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("a whole number >= 1"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("9223372036854775807"), std::string::npos) << r.err;
}

}  // namespace
