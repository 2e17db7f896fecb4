// The command-line conventions every subcommand shares: one definition of --device, --threads,
// --json, --quiet, --out/--resume/--overwrite, and validators whose messages read as people write
// ranges ("a whole number >= 1"), refusing out-of-range numbers instead of clamping them.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <string>

namespace lowrank::cli {

// Whole numbers in [lo, hi] (no fraction, no exponent, nothing after the digits). The message
// states the range as "a whole number >= 1" when hi is the type's maximum.
CLI::Validator whole_number(int64_t lo, int64_t hi = std::numeric_limits<int64_t>::max());
CLI::Validator positive_int();      // whole number >= 1
CLI::Validator non_negative_int();  // whole number >= 0
CLI::Validator unsigned_int();      // whole number from 0 to 2^64 - 1 (seeds)
CLI::Validator positive_number();   // finite, > 0
CLI::Validator non_negative_number();
CLI::Validator fraction_below_one();  // in [0, 1)
CLI::Validator fraction_up_to_one();  // in (0, 1]
CLI::Validator device_name();         // cpu, cuda, cuda:N

// The --threads default of every subcommand (0: one per core, train::threads_per_process()). See
// the README's "Conventions" for the measurements that chose it; change it here only, with a new
// measurement. On a quiet 2-core machine the GPT-2 steps run 1.5-1.9x faster on two threads than
// on one, the MLP epoch 1.44x (train-mlp's model is bit-identical at 1 and 2 threads).
inline constexpr int kDefaultThreads = 0;

// --device cpu|cuda[:N] (read with train::setup_device).
void add_device_option(CLI::App* sub, std::string& device);
// --threads N, 0 (one per core) to train::kMaxThreads; sets `threads` to `default_threads` first.
void add_threads_option(CLI::App* sub, int& threads, int default_threads = kDefaultThreads);
// Both of the above.
void add_device_options(CLI::App* sub, std::string& device, int& threads, int default_threads = kDefaultThreads);
// --json: exactly one JSON object on stdout.
void add_json_flag(CLI::App* sub, bool& json);
// --quiet: nothing on stderr but errors (no progress line, no log lines). --no-progress, its old
// name in the gpt2 subcommands, is still accepted (hidden).
void add_quiet_flag(CLI::App* sub, bool& quiet);
// An on/off setting as two flags, --NAME and --no-NAME, whose help says which is the default:
// "--compression  also run ... (default: on)" and "--no-compression  turn --compression off".
// Giving both is a usage error.
void add_switch(CLI::App* sub, const std::string& name, bool& value, const std::string& what);
// --out DIR (default shown as `default_text`), --resume DIR and --overwrite, as every training
// subcommand reads them: --resume continues in its own folder unless --out is given.
void add_run_folder_options(CLI::App* sub, std::string& out, std::string& resume, bool& overwrite,
                            const std::string& default_text);

}  // namespace lowrank::cli
