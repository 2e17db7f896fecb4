// A GPT-2 vocabulary for tool tests: the 256 byte tokens in GPT-2's own symbol spelling plus
// <|endoftext|> (id 256) and no merges, so a toy model of vocab_size 257 reads any text.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace lowrank::test {

// GPT-2's byte -> symbol table: printable Latin-1 bytes stand for themselves, the others are moved
// to U+0100 upwards, in byte order.
inline std::string gpt2_byte_symbol(int b) {
  auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c) n += !printable(c);
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Writes encoder.json and vocab.bpe of the byte vocabulary into `dir` (created when missing).
inline void write_byte_vocab(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  nlohmann::json enc = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) enc[gpt2_byte_symbol(b)] = b;
  enc["<|endoftext|>"] = 256;
  std::ofstream(dir / "encoder.json") << enc.dump();
  std::ofstream(dir / "vocab.bpe") << "#version: 0.2\n";
}

}  // namespace lowrank::test
