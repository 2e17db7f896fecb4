// GPT-2 test inputs: tiny model configs, random ids, the installed tokenizer vocabulary (loaded
// once per process), the tokenizer fixture folder, and small text helpers.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/gpt2/config.h"
#include "models/gpt2/tokenizer.h"

namespace lowrank::test {

// The tools' tests' model on the byte vocabulary (tests/support/byte_vocab.h): 1 layer, 2 heads of 8,
// context 16, 257 ids, no dropout; a gpt2 train run of it takes well under a second.
inline constexpr const char* kTinyByteGpt2Json =
    R"({"n_layer": 1, "n_head": 2, "n_embd": 16, "n_ctx": 16, "vocab_size": 257, "dropout": 0.0})";

// `documents` short fortunes-style documents ("Captain 3: the ship sails at warp 3.") separated by
// "%" lines, as the fortunes files are.
inline std::string warp_corpus(int documents) {
  std::string text;
  for (int i = 0; i < documents; ++i)
    text += "Captain " + std::to_string(i) + ": the ship sails at warp " + std::to_string(i % 9) + ".\n%\n";
  return text;
}

// 2 layers, 2 heads of 8, context 16, vocab 50: every path of the model in well under a millisecond.
inline models::gpt2::Config tiny_config(double dropout = 0.0) {
  models::gpt2::Config c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 16, c.n_ctx = 16, c.vocab_size = 50, c.dropout = dropout;
  return c;
}

// Deterministic ids in [0, vocab) (a simple LCG; the values only need to be fixed and varied).
inline Tensor random_ids(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(b * t));
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab));
  }
  return Tensor::from_vector(v, {b, t});
}

using models::gpt2::Tokenizer;

inline const std::string kTokenizerFixtures = std::string(LOWRANK_FIXTURES) + "/gpt2_tokenizer";

// The installed OpenAI files (tools/setup puts them there), or "" when they are missing.
inline std::string vocab_dir() {
  const std::string dir = Tokenizer::default_dir();
  return std::filesystem::exists(dir + "/encoder.json") && std::filesystem::exists(dir + "/vocab.bpe") ? dir : "";
}

// Loaded once: parsing 50257 tokens and 50000 merges is the slow part of these tests.
inline const Tokenizer& gpt2() {
  static const Tokenizer tok = Tokenizer::from_dir(vocab_dir());
  return tok;
}

#define REQUIRE_VOCAB()                     \
  if (::lowrank::test::vocab_dir().empty()) \
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

}  // namespace lowrank::test
