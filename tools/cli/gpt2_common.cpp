// `lowrank gpt2`: gathers the train/generate/eval/tokenize subcommands and holds what they share.
#include "tools/cli/gpt2_common.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/threads.h"
#include "models/gpt2/checkpoint.h"

namespace lowrank::cli {
namespace gpt2 {
namespace fs = std::filesystem;
namespace mg = models::gpt2;

namespace {

CLI::Validator number_check(const char* name, const char* want, bool (*ok)(double), bool whole) {
  return CLI::Validator(
      [ok, want, whole](std::string& s) -> std::string {
        try {
          size_t used = 0;
          const double v = whole ? static_cast<double>(std::stoll(s, &used)) : std::stod(s, &used);
          if (used == s.size() && ok(v)) return "";
        } catch (const std::exception&) {
        }
        return std::string("must be ") + want + ", got '" + s + "'";
      },
      name);
}

}  // namespace

CLI::Validator positive_int() {
  return number_check(
      "POSITIVE", "a whole number >= 1", [](double v) { return v >= 1; }, true);
}
CLI::Validator non_negative_int() {
  return number_check(
      "NONNEGATIVE", "a whole number >= 0", [](double v) { return v >= 0; }, true);
}
CLI::Validator positive_number() {
  return number_check(
      "POSITIVE", "a positive number", [](double v) { return std::isfinite(v) && v > 0; }, false);
}
CLI::Validator non_negative_number() {
  return number_check(
      "NONNEGATIVE", "a number >= 0", [](double v) { return std::isfinite(v) && v >= 0; }, false);
}
CLI::Validator fraction_below_one() {
  return number_check(
      "FRACTION", "a number in [0, 1)", [](double v) { return v >= 0 && v < 1; }, false);
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

mg::Tokenizer load_tokenizer(const std::string& dir_flag, const char* command) {
  const std::string dir = dir_flag.empty() ? mg::Tokenizer::default_dir() : dir_flag;
  LR_CHECK(fs::is_directory(dir),
           "gpt2 {}: no GPT-2 vocabulary folder {} (tools/setup installs encoder.json + vocab.bpe there; "
           "point --vocab or $LOWRANK_GPT2_VOCAB at a folder with them or with vocab.json + merges.txt)",
           command, dir);
  try {
    return mg::Tokenizer::from_dir(dir);
  } catch (const Error& e) {
    LR_FAIL("gpt2 {}: cannot read the vocabulary in {}: {}", command, dir, e.what());
  }
}

mg::TextEncoder text_encoder(const mg::Tokenizer& tok, const std::string& dir_flag) {
  const std::string dir = dir_flag.empty() ? mg::Tokenizer::default_dir() : dir_flag;
  mg::TextEncoder e;
  e.encode = [tok](std::string_view text) { return tok.encode(text); };
  e.eot_id = tok.eot_id();
  e.vocab_size = tok.vocab_size();
  e.fingerprint = mg::vocab_fingerprint(dir);
  return e;
}

std::unique_ptr<mg::Gpt2> load_model(const std::string& path, const char* command) {
  LR_CHECK(fs::exists(path),
           "gpt2 {}: no model at {} (a folder from `lowrank gpt2 train`, a Hugging Face folder with "
           "model.safetensors + config.json, or a .safetensors file)",
           command, path);
  try {
    return mg::load_any(path);
  } catch (const Error& e) {
    LR_FAIL("gpt2 {}: cannot load the model {}: {}", command, path, e.what());
  }
}

void check_vocab_fits(const mg::Gpt2& model, const mg::Tokenizer& tok, const char* command) {
  LR_CHECK(model.config().vocab_size >= tok.vocab_size(),
           "gpt2 {}: the model's vocabulary has {} ids but the tokenizer's has {}; they must match", command,
           model.config().vocab_size, tok.vocab_size());
}

void add_device_options(CLI::App* sub, std::string& device, int& threads) {
  sub->add_option("--device", device, "cpu or cuda[:N]")->check(device_name())->capture_default_str();
  sub->add_option("--threads", threads, "CPU threads (0: one per core)")
      ->check(non_negative_int())
      ->capture_default_str();
}

void add_vocab_option(CLI::App* sub, std::string& vocab) {
  sub->add_option(
      "--vocab", vocab,
      "tokenizer folder (default: $LOWRANK_GPT2_VOCAB, else " + models::gpt2::Tokenizer::default_dir() + ")");
}

Device setup_device(const std::string& name, int threads, const char* command) {
  const Device device = Device::parse(name);
  if (device.is_cuda())
    LR_CHECK(cuda_available(), "gpt2 {}: --device {} asked for, but {}", command, name,
             cuda_device_count() == 0 ? "no CUDA device answers (or this build has no CUDA backend)"
                                      : "that device is not available");
  LR_CHECK(threads >= 0, "gpt2 {}: --threads must be >= 0 (0: one per core), got {}", command, threads);
  set_num_threads(threads);
  return device;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

// ---- StatusLine

StatusLine::StatusLine(bool enabled) : enabled_(enabled && ::isatty(STDERR_FILENO) == 1), start_(now_seconds()) {}

StatusLine::~StatusLine() {
  clear();
}

void StatusLine::draw(double fraction, const std::string& text, bool force) {
  if (!enabled_) return;
  const double t = now_seconds();
  if (!force && t - last_ < 0.1) return;
  last_ = t;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int width = 20;
  const int filled = static_cast<int>(width * fraction);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
  const double elapsed = t - start_;
  const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : NAN;
  std::fprintf(stderr, "\r[%s] %s ETA %s\x1b[K", bar.c_str(), text.c_str(), clock_text(eta).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void StatusLine::clear() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\x1b[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace gpt2

RunFn register_gpt2(CLI::App& app) {
  auto* sub = app.add_subcommand("gpt2", "GPT-2: train, generate, evaluate perplexity, tokenize");
  sub->require_subcommand(1);
  // A flag given twice takes its last value, so scripts can append overrides to a fixed command.
  sub->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::pair<CLI::App*, RunFn>> runs;
  for (auto reg : {gpt2::register_gpt2_train, gpt2::register_gpt2_generate, gpt2::register_gpt2_eval,
                   gpt2::register_gpt2_tokenize}) {
    RunFn fn = reg(*sub);
    runs.emplace_back(sub->get_subcommands({}).back(), std::move(fn));
  }
  return [runs]() {
    for (const auto& [app, fn] : runs)
      if (app->parsed()) return fn();
    return kExitUsage;
  };
}

}  // namespace lowrank::cli
