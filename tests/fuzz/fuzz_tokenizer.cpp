// libFuzzer target: GPT-2 tokenizer encode and decode. The first input byte picks the mode:
// even: encode the rest as text, and check decode(encode(s)) == s and that re-encoding the decoded
// ids gives the same ids (canonical sequences round-trip); odd: decode the rest as little-endian
// u16 ids (some beyond the vocabulary, which must be refused cleanly).
// Uses the installed vocabulary when there is one (tools/setup), else a small one built here.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/gpt2/bpe_files.h"
#include "models/gpt2/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace fs = std::filesystem;
using lowrank::models::gpt2::Tokenizer;

std::string symbols(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) {
    const uint32_t cp = lowrank::models::gpt2::byte_to_symbol(b);
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

// 256 byte tokens, merges of a few common pairs (also across spaces and digits), <|endoftext|>.
Tokenizer small_tokenizer() {
  const fs::path dir = fs::temp_directory_path() / ("lowrank-fuzz-vocab-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  std::string merges = "#version: 0.2\n";
  const char* pairs[][2] = {{"t", "h"}, {"th", "e"}, {" ", "the"}, {"a", "a"}, {"aa", "aa"}, {"e", "r"},
                            {"1", "2"}, {" ", " "},  {"  ", "  "}, {"i", "n"}, {"in", "g"},  {"'", "s"}};
  for (const auto& p : pairs) {
    merges += symbols(p[0]) + " " + symbols(p[1]) + "\n";
    tokens.push_back(std::string(p[0]) + p[1]);
  }
  std::string vocab = "{";
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string key;
    for (char c : symbols(tokens[i])) {
      if (c == '"' || c == '\\') key += '\\';
      key += c;
    }
    vocab += "\"" + key + "\": " + std::to_string(i) + ",";
  }
  vocab += "\"<|endoftext|>\": " + std::to_string(tokens.size()) + "}";
  std::ofstream(dir / "vocab.json") << vocab;
  std::ofstream(dir / "merges.txt") << merges;
  Tokenizer tok = Tokenizer::from_dir(dir.string());
  fs::remove_all(dir);
  return tok;
}

const Tokenizer& tokenizer() {
  static const Tokenizer tok = [] {
    const std::string dir = Tokenizer::default_dir();
    if (fs::exists(dir + "/encoder.json") && fs::exists(dir + "/vocab.bpe")) return Tokenizer::from_dir(dir);
    return small_tokenizer();
  }();
  return tok;
}

}  // namespace

// The vocabulary is loaded before the first input: under ASan on a loaded machine reading GPT-2's
// files takes seconds, which -timeout would otherwise charge to whichever input came first.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Tokenizer& tok = tokenizer();
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  lowrank::fuzz::expect_clean([&] {
    if (data[0] % 2 == 0) {
      const bool special = data[0] & 2;
      const std::vector<int64_t> ids = tok.encode(rest, special);
      if (tok.decode(ids) != rest) std::abort();
      if (!special && tok.encode(tok.decode(ids)) != ids) std::abort();
    } else {
      std::vector<int64_t> ids;
      for (size_t i = 0; i + 1 < rest.size(); i += 2)
        ids.push_back(static_cast<uint8_t>(rest[i]) | (static_cast<uint8_t>(rest[i + 1]) << 8));
      const std::string bytes = tok.decode(ids);
      std::string streamed;
      for (int64_t id : ids) streamed += tok.decode_token(id);
      if (streamed != bytes) std::abort();
    }
  });
  return 0;
}
