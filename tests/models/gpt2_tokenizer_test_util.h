// Shared by the GPT-2 tokenizer tests: the installed vocabulary (loaded once per process), the
// fixture folder, and small text helpers.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "models/gpt2/tokenizer.h"

namespace lowrank::testing_gpt2 {

using models::gpt2::Tokenizer;
namespace fs = std::filesystem;

inline const std::string kFixtures = std::string(LOWRANK_FIXTURES) + "/gpt2_tokenizer";

// The installed OpenAI files (tools/setup puts them there), or "" when they are missing.
inline std::string vocab_dir() {
  const std::string dir = Tokenizer::default_dir();
  return fs::exists(dir + "/encoder.json") && fs::exists(dir + "/vocab.bpe") ? dir : "";
}

// Loaded once: parsing 50257 tokens and 50000 merges is the slow part of these tests.
inline const Tokenizer& gpt2() {
  static const Tokenizer tok = Tokenizer::from_dir(vocab_dir());
  return tok;
}

#define REQUIRE_VOCAB()                             \
  if (::lowrank::testing_gpt2::vocab_dir().empty()) \
  GTEST_SKIP() << "no GPT-2 vocabulary in " << ::lowrank::models::gpt2::Tokenizer::default_dir() << " (run tools/setup)"

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

inline std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace lowrank::testing_gpt2
