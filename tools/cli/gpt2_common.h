// What the `lowrank gpt2 ...` subcommands share: flag validators, the tokenizer and model loaders
// with one-line errors, device and thread set-up, a tokens/s progress line, and the subcommand
// registrations that gpt2_common.cpp gathers under `lowrank gpt2`.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "core/device.h"
#include "models/gpt2/model.h"
#include "models/gpt2/text_data.h"
#include "models/gpt2/tokenizer.h"
#include "tools/cli/command.h"

namespace lowrank::cli::gpt2 {

// CLI11 validators whose messages say what is wanted (its own range checks print the whole range).
CLI::Validator positive_int();      // whole number >= 1
CLI::Validator non_negative_int();  // whole number >= 0
CLI::Validator positive_number();   // finite, > 0
CLI::Validator non_negative_number();
CLI::Validator fraction_below_one();  // in [0, 1)
CLI::Validator device_name();         // cpu, cuda, cuda:N

// The tokenizer in `dir` (empty: Tokenizer::default_dir()); a missing folder or file is one line
// that says where the files come from.
models::gpt2::Tokenizer load_tokenizer(const std::string& dir, const char* command);
// The data pipeline's view of a tokenizer, fingerprinted by the vocabulary files in `dir`.
models::gpt2::TextEncoder text_encoder(const models::gpt2::Tokenizer& tok, const std::string& dir);
// Ours or Hugging Face's, a folder or a .safetensors file (models::gpt2::load_any), with an error
// that names the path when there is nothing there.
std::unique_ptr<models::gpt2::Gpt2> load_model(const std::string& path, const char* command);
// Checks that the tokenizer's ids fit the model's vocabulary.
void check_vocab_fits(const models::gpt2::Gpt2& model, const models::gpt2::Tokenizer& tok, const char* command);

// Parses --device (checking a CUDA device answers) and applies --threads (0: one per core).
Device setup_device(const std::string& device, int threads, const char* command);
// The flags every model-running subcommand shares: --device and --threads (read by setup_device),
// and --vocab (read by load_tokenizer).
void add_device_options(CLI::App* sub, std::string& device, int& threads);
void add_vocab_option(CLI::App* sub, std::string& vocab);

double now_seconds();

// One status line redrawn in place on stderr when it is a terminal (step, loss, tokens/s, ETA);
// silent otherwise.
class StatusLine {
 public:
  explicit StatusLine(bool enabled);
  ~StatusLine();
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;
  // `fraction` of the run done (for the bar and the ETA), `text` the rest of the line.
  void draw(double fraction, const std::string& text, bool force = false);
  void clear();

 private:
  bool enabled_, drawn_ = false;
  double start_, last_ = -1.0;
};

// "1:05", "1:02:03"; "--:--" for anything not a finite non-negative number.
std::string clock_text(double seconds);

// Each subcommand file defines one of these; register_gpt2 (command.h) calls them.
RunFn register_gpt2_train(CLI::App& gpt2);
RunFn register_gpt2_generate(CLI::App& gpt2);
RunFn register_gpt2_eval(CLI::App& gpt2);
RunFn register_gpt2_tokenize(CLI::App& gpt2);

}  // namespace lowrank::cli::gpt2
