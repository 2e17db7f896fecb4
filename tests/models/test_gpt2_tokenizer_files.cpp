// GPT-2 tokenizer files: both folder layouts (OpenAI's and Hugging Face's names), a small
// hand-written vocabulary, every kind of bad vocabulary or merge list, and the default folder lookup.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "models/gpt2/bpe_files.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/gpt2.h"

using namespace lowrank;
using namespace test;
using test::read_bytes;
using test::TempDir;
using test::write_bytes;
namespace fs = std::filesystem;

namespace {

// 256 byte tokens (ids 0..255 in byte order), then "ab", "abc", "Ġa" from three merges, then
// <|endoftext|>: small enough to write in a test, complete enough to load.
nlohmann::json tiny_vocab() {
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) v[utf8(models::gpt2::byte_to_symbol(static_cast<uint8_t>(b)))] = b;
  v["ab"] = 256;
  v["abc"] = 257;
  v[utf8(0x120) + "a"] = 258;  // "Ġa"
  v["<|endoftext|>"] = 259;
  return v;
}
const std::string kTinyMerges = "#version: 0.2\na b\nab c\n\xC4\xA0 a\n";

Tokenizer load_tiny(const TempDir& dir, const std::string& vocab, const std::string& merges,
                    const char* vocab_name = "encoder.json", const char* merges_name = "vocab.bpe") {
  write_bytes(dir.file(vocab_name), vocab);
  write_bytes(dir.file(merges_name), merges);
  return Tokenizer::from_dir(dir.path().string());
}

}  // namespace

TEST(Gpt2TokenizerFiles, TinyVocabularyMergesByRank) {
  TempDir dir;
  const Tokenizer t = load_tiny(dir, tiny_vocab().dump(), kTinyMerges);
  EXPECT_EQ(t.vocab_size(), 260);
  EXPECT_EQ(t.eot_id(), 259);
  // " ab": (a, b) has rank 0 and beats (Ġ, a) at rank 2, so the space stays alone.
  EXPECT_EQ(t.encode("abc ab"), (std::vector<int64_t>{257, ' ', 256}));
  EXPECT_EQ(t.encode(" ac"), (std::vector<int64_t>{258, 'c'}));
  EXPECT_EQ(t.decode({257, 259}), "abc<|endoftext|>");
}

TEST(Gpt2TokenizerFiles, EachRoundOfMergesEndsBeforeTheNewPairsCount) {
  // A merge list whose ranks are not in creation order: "xy x" (rank 0) needs "xy", which only
  // "x y" (rank 1) makes. GPT-2's bpe() merges every "x y" of "xyxy" first, giving "xy" "xy"; a
  // heap that let the new pair "xy x" jump the queue would give "xyx" "y".
  TempDir dir;
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) v[utf8(models::gpt2::byte_to_symbol(static_cast<uint8_t>(b)))] = b;
  v["xy"] = 256;
  v["xyx"] = 257;
  v["<|endoftext|>"] = 258;
  const Tokenizer t = load_tiny(dir, v.dump(), "#version: 0.2\nxy x\nx y\n");
  EXPECT_EQ(t.encode("xyxy"), (std::vector<int64_t>{256, 256}));
  EXPECT_EQ(t.encode("xyx"), (std::vector<int64_t>{257}));  // here "xy x" is the next round
}

TEST(Gpt2TokenizerFiles, HuggingFaceNamesGiveTheSameTokenizer) {
  REQUIRE_VOCAB();
  TempDir dir;
  // Hugging Face's merges.txt has its own header line and may end in CRLF on some copies.
  std::string merges = read_bytes(vocab_dir() + "/vocab.bpe");
  merges = "#version: 0.2 - Trained by `huggingface/tokenizers`" + merges.substr(merges.find('\n'));
  write_bytes(dir.file("merges.txt"), merges);
  fs::copy_file(vocab_dir() + "/encoder.json", dir.file("vocab.json"));
  const Tokenizer hf = Tokenizer::from_dir(dir.path().string());
  EXPECT_EQ(hf.vocab_size(), 50257);
  for (const auto& line : split_lines(read_bytes(kTokenizerFixtures + "/input.txt"))) {
    ASSERT_EQ(hf.encode(line), gpt2().encode(line)) << line;
  }
}

TEST(Gpt2TokenizerFiles, FolderErrorsNameWhatIsMissing) {
  TempDir dir;
  EXPECT_LR_ERROR(Tokenizer::from_dir(dir.file("nope")), "nope", "is not a folder");
  EXPECT_LR_ERROR(Tokenizer::from_dir(dir.path().string()), "no GPT-2 vocabulary", "encoder.json + vocab.bpe",
                  "vocab.json + merges.txt", "LOWRANK_GPT2_VOCAB");
  write_bytes(dir.file("vocab.json"), tiny_vocab().dump());
  EXPECT_LR_ERROR(Tokenizer::from_dir(dir.path().string()), "has vocab.json but not merges.txt");
  write_bytes(dir.file("vocab.bpe"), kTinyMerges);
  EXPECT_LR_ERROR(Tokenizer::from_dir(dir.path().string()), "has vocab.bpe but not encoder.json");
  EXPECT_LR_ERROR(Tokenizer::from_files(dir.file("missing.json"), dir.file("vocab.bpe")), "cannot open the vocabulary",
                  "missing.json");
  fs::create_directories(dir.file("folder.json"));
  EXPECT_LR_ERROR(Tokenizer::from_files(dir.file("folder.json"), dir.file("vocab.bpe")), "is a folder");
}

TEST(Gpt2TokenizerFiles, BadVocabulariesAreRefusedClearly) {
  TempDir dir;
  auto expect_bad = [&](const std::string& vocab, std::initializer_list<std::string> parts) {
    try {
      load_tiny(dir, vocab, kTinyMerges);
      ADD_FAILURE() << "accepted: " << vocab.substr(0, 80);
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_NE(msg.find("encoder.json"), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
    }
  };
  const std::string good = tiny_vocab().dump();
  expect_bad(good.substr(0, good.size() / 2), {"not valid JSON"});  // truncated
  expect_bad("", {"not valid JSON"});
  expect_bad("[1, 2, 3]", {"expected a JSON object"});
  expect_bad(good + "x", {"not valid JSON"});
  auto with = [&](const std::string& key, const nlohmann::json& value) {
    auto v = tiny_vocab();
    v[key] = value;
    return v.dump();
  };
  expect_bad(with("ab", "256"), {"\"ab\"", "non-negative integers"});
  expect_bad(with("ab", -3), {"\"ab\"", "-3"});
  expect_bad(with("ab", 2.5), {"\"ab\"", "2.5"});
  expect_bad(with("ab", nlohmann::json::array({256})), {"\"ab\"", "an array"});
  expect_bad(with("abc", 256), {"both have the id 256"});             // duplicate id
  expect_bad(with("abc", 999), {"\"abc\"", "the id 999", "0..259"});  // a gap in the ids
  {
    auto v = tiny_vocab();  // a raw space is no byte symbol ('Ġ' is)
    v.erase("abc");
    v["a b"] = 257;
    expect_bad(v.dump(), {"\"a b\"", "byte symbols"});
  }
  {
    std::string twice = good;  // the same token written twice (nlohmann's tree would keep one)
    twice.insert(1, "\"ab\":256,");
    expect_bad(twice, {"\"ab\" is listed twice"});
  }
  {
    auto v = tiny_vocab();
    v.erase("\xC4\x80");  // byte 0x00's symbol U+0100
    v["x\xC4\xA0"] = 0;
    expect_bad(v.dump(), {"no token for the byte 0x00"});
  }
  {
    auto v = tiny_vocab();
    v.erase("<|endoftext|>");
    v["c\xC4\xA0"] = 259;
    expect_bad(v.dump(), {"no <|endoftext|>"});
  }
  expect_bad("{\"a\": 0}", {"1 tokens"});
}

TEST(Gpt2TokenizerFiles, BadMergeListsAreRefusedClearly) {
  TempDir dir;
  const std::string vocab = tiny_vocab().dump();
  auto expect_bad = [&](const std::string& merges, std::initializer_list<std::string> parts) {
    try {
      load_tiny(dir, vocab, merges);
      ADD_FAILURE() << "accepted: " << merges;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_NE(msg.find("vocab.bpe"), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
    }
  };
  expect_bad("#version: 0.2\na b\nab\n", {"vocab.bpe:3", "expected two tokens", "\"ab\""});
  expect_bad("#version: 0.2\na b c\n", {"vocab.bpe:2", "expected two tokens"});
  expect_bad("#version: 0.2\na b\nab q\xC4\xA0\nab c\n\xC4\xA0 a\n",
             {"vocab.bpe:3", "names \"q\xC4\xA0\"", "not in the vocabulary"});
  expect_bad("#version: 0.2\na b\nab c\n\xC4\xA0 a\nb c\n", {"vocab.bpe:5", "makes \"bc\"", "not in the vocabulary"});
  expect_bad("#version: 0.2\na b\nab c\na b\n\xC4\xA0 a\n", {"vocab.bpe:4", "repeats line 2"});
  expect_bad("#version: 0.2\na b\n\nab c\n\xC4\xA0 a\n", {"vocab.bpe:3", "empty line"});
  expect_bad("#version: 0.2\na b\nab c\n", {"no merge makes the token \"\xC4\xA0"
                                            "a\"",
                                            "truncated"});
  expect_bad("", {"no merge makes the token \"ab\"", "0 merges"});
  expect_bad("#version: 0.2\na \xFF\n", {"vocab.bpe:2", "byte symbols"});
  // CRLF line ends and a missing final newline are fine.
  EXPECT_NO_THROW(load_tiny(dir, vocab, "#version: 0.2\r\na b\r\nab c\r\n\xC4\xA0 a"));
}

TEST(Gpt2TokenizerFiles, TruncatedRealFilesAreRefused) {
  REQUIRE_VOCAB();
  TempDir dir;
  const std::string vocab = read_bytes(vocab_dir() + "/encoder.json");
  const std::string merges = read_bytes(vocab_dir() + "/vocab.bpe");
  // The ends of lines: a cut mid-line would fail on that line, this cut fails on the missing merges.
  const std::string half_merges = merges.substr(0, merges.find('\n', merges.size() / 2) + 1);
  EXPECT_LR_ERROR(load_tiny(dir, vocab, half_merges), "no merge makes the token", "truncated");
  EXPECT_LR_ERROR(load_tiny(dir, vocab.substr(0, vocab.size() - 100), merges), "encoder.json", "not valid JSON");
}

TEST(Gpt2TokenizerFiles, DefaultDirFollowsTheEnvironment) {
  // Restores both variables however the test ends.
  struct SavedEnv {
    std::string name;
    std::optional<std::string> value;
    explicit SavedEnv(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) value = v;
    }
    ~SavedEnv() { value ? ::setenv(name.c_str(), value->c_str(), 1) : ::unsetenv(name.c_str()); }
  } saved_vocab("LOWRANK_GPT2_VOCAB"), saved_data("LOWRANK_DATA");
  TempDir dir;
  write_bytes(dir.file("vocab.json"), tiny_vocab().dump());
  write_bytes(dir.file("merges.txt"), kTinyMerges);
  ::unsetenv("LOWRANK_DATA");
  ::setenv("LOWRANK_GPT2_VOCAB", dir.path().c_str(), 1);
  EXPECT_EQ(Tokenizer::default_dir(), dir.path().string());
  EXPECT_EQ(Tokenizer::from_dir(Tokenizer::default_dir()).vocab_size(), 260);
  ::setenv("LOWRANK_GPT2_VOCAB", "", 1);
  EXPECT_EQ(Tokenizer::default_dir(), "/usr/local/share/lowrank/gpt2");
  ::unsetenv("LOWRANK_GPT2_VOCAB");
  EXPECT_EQ(Tokenizer::default_dir(), "/usr/local/share/lowrank/gpt2");
  ::setenv("LOWRANK_DATA", "/opt/data", 1);  // tools/setup's data folder, moved
  EXPECT_EQ(Tokenizer::default_dir(), "/opt/data/gpt2");
  ::setenv("LOWRANK_GPT2_VOCAB", dir.path().c_str(), 1);  // the specific variable wins
  EXPECT_EQ(Tokenizer::default_dir(), dir.path().string());
}
