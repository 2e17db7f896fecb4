// The shared flags and validators of the `lowrank` subcommands.
#include "tools/cli/flags.h"

#include <charconv>
#include <cmath>
#include <functional>

#include "core/device.h"
#include "tools/train/setup.h"

namespace lowrank::cli {
namespace {

// Parses all of `s` as T; false for anything else (signs where T has none, trailing text, range).
template <class T>
bool parse_whole(const std::string& s, T& v) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto [end, ec] = std::from_chars(b, e, v);
  return ec == std::errc() && end == e;
}

std::string range_text(int64_t lo, int64_t hi) {
  if (hi == std::numeric_limits<int64_t>::max()) return "a whole number >= " + std::to_string(lo);
  return "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
}

CLI::Validator real_check(const char* name, const char* want, std::function<bool(double)> ok) {
  return CLI::Validator(
      [ok, want](std::string& s) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && ok(v)) return "";
        } catch (const std::exception&) {
        }
        return std::string("must be ") + want + ", got '" + s + "'";
      },
      name);
}

}  // namespace

CLI::Validator whole_number(int64_t lo, int64_t hi) {
  const std::string want = range_text(lo, hi);
  return CLI::Validator(
      [lo, hi, want](std::string& s) -> std::string {
        int64_t v = 0;
        if (parse_whole(s, v) && v >= lo && v <= hi) return "";
        return "must be " + want + ", got '" + s + "'";
      },
      lo == 0 && hi == std::numeric_limits<int64_t>::max() ? "NONNEGATIVE" : (lo == 1 ? "POSITIVE" : "RANGE"));
}

CLI::Validator positive_int() {
  return whole_number(1);
}

CLI::Validator non_negative_int() {
  return whole_number(0);
}

CLI::Validator unsigned_int() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        uint64_t v = 0;
        if (parse_whole(s, v)) return "";
        return "must be a whole number from 0 to 18446744073709551615, got '" + s + "'";
      },
      "UINT");
}

CLI::Validator positive_number() {
  return real_check("POSITIVE", "a positive number", [](double v) { return std::isfinite(v) && v > 0; });
}

CLI::Validator non_negative_number() {
  return real_check("NONNEGATIVE", "a number >= 0", [](double v) { return std::isfinite(v) && v >= 0; });
}

CLI::Validator fraction_below_one() {
  return real_check("FRACTION", "a number from 0 to below 1", [](double v) { return v >= 0 && v < 1; });
}

CLI::Validator fraction_up_to_one() {
  return real_check("FRACTION", "a number above 0 and at most 1", [](double v) { return v > 0 && v <= 1; });
}

CLI::Validator device_name() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        try {
          Device::parse(s);
          return "";
        } catch (const std::exception&) {
          return "expected cpu, cuda or cuda:N, got '" + s + "'";
        }
      },
      "DEVICE");
}

void add_device_option(CLI::App* sub, std::string& device) {
  sub->add_option("--device", device, "cpu or cuda[:N]")->check(device_name())->capture_default_str();
}

void add_threads_option(CLI::App* sub, int& threads, int default_threads) {
  threads = default_threads;
  sub->add_option("--threads", threads, "CPU threads, 0 (one per core) to " + std::to_string(train::kMaxThreads))
      ->check(whole_number(0, train::kMaxThreads))
      ->capture_default_str();
}

void add_device_options(CLI::App* sub, std::string& device, int& threads, int default_threads) {
  add_device_option(sub, device);
  add_threads_option(sub, threads, default_threads);
}

void add_json_flag(CLI::App* sub, bool& json) {
  sub->add_flag("--json", json, "print exactly one JSON object (the summary) on stdout");
}

void add_quiet_flag(CLI::App* sub, bool& quiet) {
  sub->add_flag("--quiet", quiet, "nothing on stderr but errors: no progress line, no log lines");
  sub->add_flag("--no-progress", quiet)->group("");  // the gpt2 subcommands' old name
}

void add_switch(CLI::App* sub, const std::string& name, bool& value, const std::string& what) {
  bool* v = &value;
  auto* on = sub->add_flag_callback(
      "--" + name, [v] { *v = true; }, what + " (default: " + (value ? "on" : "off") + ")");
  auto* off = sub->add_flag_callback(
      "--no-" + name, [v] { *v = false; }, "turn --" + name + " off");
  on->excludes(off);
}

void add_run_folder_options(CLI::App* sub, std::string& out, std::string& resume, bool& overwrite,
                            const std::string& default_text) {
  sub->add_option("--out", out, "output folder (default: the --resume folder, else " + default_text + ")");
  sub->add_option("--resume", resume,
                  "continue a run: its folder, one of its checkpoint-<step> folders, or a file in either; writes into "
                  "that run folder unless --out is given");
  sub->add_flag("--overwrite", overwrite, "replace a run already in the output folder (its checkpoints go)");
}

}  // namespace lowrank::cli
