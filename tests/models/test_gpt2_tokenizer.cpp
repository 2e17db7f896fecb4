// GPT-2 tokenizer: ids equal the npm reference encoder's on the committed fixture, the split, round
// trips on random text and random bytes, merges equal a naive string BPE, the special token,
// decoding errors and concurrent encoding. The files and their errors: test_gpt2_tokenizer_files.cpp.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>

#include "models/gpt2/bpe_files.h"
#include "models/gpt2/tokenizer.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/gpt2.h"

using namespace lowrank;
using models::gpt2::Tokenizer;
using test::read_bytes;
using namespace test;

namespace {

// Random valid UTF-8 weighted towards what splits interestingly: ASCII letters, digits, spaces,
// apostrophes, punctuation, Unicode whitespace, Latin-1, CJK, combining marks, emoji.
std::string random_text(std::mt19937& rng, size_t chars) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {'a', 'z'},       {'A', 'Z'},       {'0', '9'},       {' ', ' '},       {' ', ' '},         {'\'', '\''},
      {'!', '/'},       {'\t', '\r'},     {0x80, 0x24F},    {0x300, 0x36F},   {0x4E00, 0x9FFF},   {0x1F300, 0x1F64F},
      {0x2000, 0x200F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}, {0x0600, 0x06FF}, {0x10000, 0x10FFFF}};
  std::string s;
  for (size_t i = 0; i < chars; ++i) {
    const auto& [lo, hi] = ranges[rng() % ranges.size()];
    uint32_t cp = lo + static_cast<uint32_t>(rng() % (hi - lo + 1));
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    s += utf8(cp);
  }
  return s;
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// GPT-2's bpe() on strings, as written in OpenAI's encoder.py: repeatedly merge every occurrence of
// the lowest-ranked pair, left to right. O(n^2) but independent of the tokenizer's heap.
struct NaiveBpe {
  std::unordered_map<std::string, size_t> ranks;  // "left\0right" -> rank

  explicit NaiveBpe(const std::string& dir) {
    // bytes_to_unicode(), derived here again rather than taken from bpe_files.h.
    std::map<std::string, char> byte_of;
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_of[utf8(printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++))] = static_cast<char>(b);
    }
    auto to_bytes = [&](const std::string& sym) {
      std::string out;
      for (size_t i = 0; i < sym.size();) {
        const size_t len = (static_cast<unsigned char>(sym[i]) < 0x80) ? 1 : 2;  // symbols are < U+0800
        out += byte_of.at(sym.substr(i, len));
        i += len;
      }
      return out;
    };
    const auto lines = split_lines(read_bytes(dir + "/vocab.bpe"));
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t sp = lines[i].find(' ');
      ranks[to_bytes(lines[i].substr(0, sp)) + '\0' + to_bytes(lines[i].substr(sp + 1))] = i;
    }
  }

  std::vector<int64_t> operator()(const std::string& piece) const {
    std::vector<std::string> word;
    for (char c : piece) word.emplace_back(1, c);
    while (word.size() > 1) {
      size_t best = SIZE_MAX;
      std::pair<std::string, std::string> pair;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = ranks.find(word[i] + '\0' + word[i + 1]);
        if (it != ranks.end() && it->second < best) best = it->second, pair = {word[i], word[i + 1]};
      }
      if (best == SIZE_MAX) break;
      std::vector<std::string> next;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == pair.first && word[i + 1] == pair.second) {
          next.push_back(pair.first + pair.second);
          i += 2;
        } else {
          next.push_back(word[i++]);
        }
      }
      word = std::move(next);
    }
    std::vector<int64_t> out;
    for (const auto& w : word) out.push_back(gpt2().token_id(w));  // (KnownIds checks token_id)
    return out;
  }
};

std::vector<int64_t> concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

// ---- the reference

TEST(Gpt2Tokenizer, MatchesTheNpmReferenceOnEveryFixtureLine) {
  REQUIRE_VOCAB();
  const std::string input = read_bytes(kTokenizerFixtures + "/input.txt");
  const auto expected = nlohmann::json::parse(read_bytes(kTokenizerFixtures + "/expected.json"));
  const auto lines = split_lines(input);
  ASSERT_EQ(expected.at("input_bytes").get<size_t>(), input.size()) << "input.txt changed: regenerate expected.json";
  ASSERT_EQ(expected.at("lines").size(), lines.size());
  ASSERT_GE(lines.size(), 300u);
  size_t mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto want = expected.at("lines").at(i).get<std::vector<int64_t>>();
    const auto got = gpt2().encode(lines[i]);
    if (got != want && ++mismatches <= 5)
      ADD_FAILURE() << "line " << i + 1 << " \"" << lines[i] << "\": " << ::testing::PrintToString(got)
                    << " vs the reference's " << ::testing::PrintToString(want);
    EXPECT_EQ(gpt2().decode(got), lines[i]);
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(gpt2().encode(input), expected.at("whole").get<std::vector<int64_t>>());
}

TEST(Gpt2Tokenizer, KnownIds) {
  REQUIRE_VOCAB();
  const Tokenizer& t = gpt2();
  EXPECT_EQ(t.vocab_size(), 50257);
  EXPECT_EQ(t.eot_id(), 50256);
  EXPECT_EQ(t.decode_token(50256), "<|endoftext|>");
  EXPECT_EQ(t.encode("Hello world"), (std::vector<int64_t>{15496, 995}));
  EXPECT_EQ(t.encode(" the"), (std::vector<int64_t>{262}));
  EXPECT_EQ(t.token_id(" the"), 262);
  EXPECT_EQ(t.token_id("no such token, surely"), -1);
  EXPECT_EQ(t.encode("\n"), (std::vector<int64_t>{198}));
}

TEST(Gpt2Tokenizer, ByteSymbolTable) {
  // Printable Latin-1 stands for itself; the others follow from U+0100 in byte order.
  EXPECT_EQ(models::gpt2::byte_to_symbol('A'), static_cast<uint32_t>('A'));
  EXPECT_EQ(models::gpt2::byte_to_symbol(0), 0x100u);
  EXPECT_EQ(models::gpt2::byte_to_symbol(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(models::gpt2::byte_to_symbol('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(models::gpt2::byte_to_symbol(0xAD), 0x143u);  // the last of the 68
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(models::gpt2::symbol_to_byte(models::gpt2::byte_to_symbol(static_cast<uint8_t>(b))), b);
  EXPECT_EQ(models::gpt2::symbol_to_byte(0x144), -1);
  EXPECT_EQ(models::gpt2::symbol_to_byte(' '), -1);
}

// ---- the split

TEST(Gpt2Tokenizer, PreTokenizeSplitsLikeGpt2) {
  REQUIRE_VOCAB();
  using V = std::vector<std::string_view>;
  const Tokenizer& t = gpt2();
  EXPECT_EQ(t.pre_tokenize("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(t.pre_tokenize("it's 42 cats!!"), (V{"it", "'s", " 42", " cats", "!!"}));
  // \s+(?!\S): a whitespace run leaves its last space to the word after it.
  EXPECT_EQ(t.pre_tokenize("a   b"), (V{"a", "  ", " b"}));
  EXPECT_EQ(t.pre_tokenize("a \n\n b  "), (V{"a", " \n\n", " b", "  "}));
  EXPECT_EQ(t.pre_tokenize("x\t\ty"), (V{"x", "\t", "\t", "y"}));  // the last tab cannot join "y"
  EXPECT_EQ(t.pre_tokenize("I'LL"), (V{"I", "'", "LL"}));          // contractions are lower case only
  EXPECT_EQ(t.pre_tokenize("abc123"), (V{"abc", "123"}));
  EXPECT_EQ(t.pre_tokenize("caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87"), (V{"caf\xC3\xA9", " \xE4\xB8\xAD\xE6\x96\x87"}));
  // JavaScript's \s: U+FEFF is whitespace, U+0085 is not.
  EXPECT_EQ(t.pre_tokenize("a\xEF\xBB\xBF"
                           "b"),
            (V{"a", "\xEF\xBB\xBF", "b"}));
  EXPECT_EQ(t.pre_tokenize("a \xC2\x85"
                           "b"),
            (V{"a", " \xC2\x85", "b"}));
  EXPECT_TRUE(t.pre_tokenize("").empty());
}

TEST(Gpt2Tokenizer, InvalidBytesSplitAsSymbolsAndSurvive) {
  REQUIRE_VOCAB();
  using V = std::vector<std::string_view>;
  const Tokenizer& t = gpt2();
  EXPECT_EQ(t.pre_tokenize("a\xFF\xFE!"), (V{"a", "\xFF\xFE!"}));
  EXPECT_EQ(t.pre_tokenize("\xFF"
                           "abc \x80"),
            (V{"\xFF", "abc", " \x80"}));
  EXPECT_EQ(t.pre_tokenize("x\xE4\xB8 y"), (V{"x", "\xE4\xB8", " y"}));  // a truncated character
  EXPECT_EQ(t.pre_tokenize("\xED\xA0\x80"), (V{"\xED\xA0\x80"}));        // a UTF-16 surrogate
  EXPECT_EQ(t.pre_tokenize("\xC0\xAF"
                           "a"),
            (V{"\xC0\xAF", "a"}));  // an overlong '/'
  for (std::string s : {std::string("\xFF"), std::string("\x80\x80 \x80"), std::string("a\0b", 3),
                        std::string("\xF4\x90\x80\x80 ok")}) {
    const auto ids = t.encode(s);
    EXPECT_EQ(t.decode(ids), s);
    EXPECT_EQ(t.encode(t.decode(ids)), ids);
  }
}

TEST(Gpt2Tokenizer, InvalidBytesSplitLikeReplacementCharacters) {
  REQUIRE_VOCAB();
  // The documented rule: pieces of a text with invalid bytes are those of the text where each
  // run of them is one U+FFFD (what the reference would see), each U+FFFD standing for its run.
  std::mt19937 rng(4);
  const std::string kFffd = "\xEF\xBF\xBD";
  for (int i = 0; i < 300; ++i) {
    std::string with_fffd, with_bytes;
    std::vector<std::string> runs;
    for (int k = 0; k < 6; ++k) {
      const std::string t = random_text(rng, rng() % 4);
      with_fffd += t;
      with_bytes += t;
      if (rng() % 3 == 0) continue;
      std::string run;  // bytes that are invalid in any context: no lead byte of a valid sequence
      for (size_t m = 1 + rng() % 3; m > 0; --m) {
        const unsigned r = rng() % 16;
        run += static_cast<char>(r < 8 ? 0x80 + rng() % 64 : r < 10 ? 0xC0 + r - 8 : 0xF5 + rng() % 11);
      }
      runs.push_back(run);
      with_fffd += kFffd;
      with_bytes += run;
    }
    std::vector<std::string> expected;
    size_t next_run = 0;
    for (std::string_view piece : gpt2().pre_tokenize(with_fffd)) {
      std::string mapped;
      for (size_t p = 0; p < piece.size();) {
        if (piece.substr(p, 3) == kFffd && next_run < runs.size()) {
          mapped += runs[next_run++];
          p += 3;
        } else {
          mapped += piece[p++];
        }
      }
      expected.push_back(mapped);
    }
    const auto got = gpt2().pre_tokenize(with_bytes);
    ASSERT_EQ(std::vector<std::string>(got.begin(), got.end()), expected) << ::testing::PrintToString(with_bytes);
  }
}

// ---- round trips

TEST(Gpt2Tokenizer, RoundTripsRandomUtf8) {
  REQUIRE_VOCAB();
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) {
    const std::string s = random_text(rng, 1 + rng() % 60);
    const auto ids = gpt2().encode(s);
    ASSERT_EQ(gpt2().decode(ids), s) << "case " << i;
    ASSERT_EQ(gpt2().encode(gpt2().decode(ids)), ids) << "case " << i;
    // The pieces tile the text.
    std::string joined;
    for (auto p : gpt2().pre_tokenize(s)) joined += p;
    ASSERT_EQ(joined, s);
  }
}

TEST(Gpt2Tokenizer, RoundTripsRandomBytes) {
  REQUIRE_VOCAB();
  std::mt19937 rng(2);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_bytes(rng, 1 + rng() % 80);
    if (i % 2) s = random_text(rng, 10) + s + random_text(rng, 10);  // invalid bytes amid text
    const auto ids = gpt2().encode(s);
    ASSERT_EQ(gpt2().decode(ids), s) << "case " << i;
    ASSERT_EQ(gpt2().encode(gpt2().decode(ids)), ids) << "case " << i;
  }
}

TEST(Gpt2Tokenizer, EmptyAndDegenerateInputs) {
  REQUIRE_VOCAB();
  EXPECT_TRUE(gpt2().encode("").empty());
  EXPECT_EQ(gpt2().decode({}), "");
  EXPECT_TRUE(gpt2().encode("", true).empty());
  for (int b = 0; b < 256; ++b) {  // every single byte is one token
    const std::string s(1, static_cast<char>(b));
    const auto ids = gpt2().encode(s);
    ASSERT_EQ(ids.size(), 1u) << b;
    EXPECT_EQ(gpt2().decode_token(ids[0]), s);
  }
}

TEST(Gpt2Tokenizer, LongRunsStayFastAndExact) {
  REQUIRE_VOCAB();
  // Single pieces of 20k letters and digits (heap merges) and long whitespace runs (the split's
  // backtracking): exact where the answer is known (GPT-2 has no token of several spaces, and
  // "\n\n" is one), and every one round-trips.
  const Tokenizer& t = gpt2();
  const int64_t space = t.token_id(" "), two_newlines = t.token_id("\n\n");
  const std::string spaces(20000, ' ');
  EXPECT_EQ(t.encode(spaces), std::vector<int64_t>(spaces.size(), space));
  EXPECT_EQ(t.encode(std::string(20000, '\n')), std::vector<int64_t>(10000, two_newlines));
  EXPECT_EQ(t.encode("x" + spaces + "y"),
            concat(concat({t.token_id("x")}, std::vector<int64_t>(spaces.size() - 1, space)), {t.token_id(" y")}));
  for (const std::string& s : {std::string(20000, 'a'), std::string(20000, '7')}) {
    const auto ids = t.encode(s);
    EXPECT_EQ(t.decode(ids), s);
    EXPECT_LE(ids.size(), s.size() / 2);
  }
  const std::string odd = "\xE4\xB8" + spaces + "\xFF";
  EXPECT_EQ(t.decode(t.encode(odd)), odd);
}

// ---- merges

TEST(Gpt2Tokenizer, MergesEqualNaiveStringBpe) {
  REQUIRE_VOCAB();
  const NaiveBpe naive(vocab_dir());
  std::mt19937 rng(3);
  // Long pieces exercise the heap's rounds; repeated letters exercise overlapping pairs.
  std::vector<std::string> pieces = {
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", " ", "    ", "\",\"", "],[", "','", ".,\"", " ,\""};
  for (int i = 0; i < 60; ++i) {
    std::string p;
    const size_t n = 2 + rng() % 150;
    const std::string alphabet = i % 3 == 0 ? "ab" : i % 3 == 1 ? "etaoinshrdlu ,.'\"" : "";
    for (size_t k = 0; k < n; ++k)
      p += alphabet.empty() ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()];
    pieces.push_back(p);
  }
  pieces.push_back(random_text(rng, 200));
  for (const auto& p : pieces) EXPECT_EQ(gpt2().bpe(p), naive(p)) << ::testing::PrintToString(p);
}

// ---- special token

TEST(Gpt2Tokenizer, EndOfTextIsPlainTextUnlessAllowed) {
  REQUIRE_VOCAB();
  const Tokenizer& t = gpt2();
  const int64_t eot = t.eot_id();
  const std::string doc = "first doc<|endoftext|>second doc<|endoftext|>";
  const auto plain = t.encode(doc);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
  EXPECT_EQ(t.decode(plain), doc);
  const auto special = t.encode(doc, true);
  EXPECT_EQ(special, concat(concat(concat(t.encode("first doc"), {eot}), t.encode("second doc")), {eot}));
  EXPECT_EQ(t.decode(special), doc);
  EXPECT_EQ(t.encode(t.decode(special), true), special);
  EXPECT_EQ(t.encode("<|endoftext|><|endoftext|>", true), (std::vector<int64_t>{eot, eot}));
  EXPECT_EQ(t.encode("<|endoftext|", true), t.encode("<|endoftext|"));
}

// ---- decoding errors

TEST(Gpt2Tokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  REQUIRE_VOCAB();
  EXPECT_LR_ERROR(gpt2().decode({15496, 50257}), "token id 50257", "position 1", "[0, 50257)");
  EXPECT_LR_ERROR(gpt2().decode({-1}), "token id -1");
  EXPECT_LR_ERROR(gpt2().decode_token(1 << 20), "token id 1048576");
}

// ---- concurrency and the cache

TEST(Gpt2Tokenizer, ConcurrentEncodingAgreesWithSerial) {
  REQUIRE_VOCAB();
  const auto lines = split_lines(read_bytes(kTokenizerFixtures + "/input.txt"));
  Tokenizer t = gpt2();  // a copy shares the cache
  t.clear_cache();
  EXPECT_EQ(gpt2().cache_size(), 0u);
  std::vector<std::vector<std::vector<int64_t>>> results(4);
  std::vector<std::thread> threads;
  for (size_t w = 0; w < results.size(); ++w)
    threads.emplace_back([&, w] {
      for (size_t i = 0; i < lines.size(); ++i) results[w].push_back(t.encode(lines[(i + w * 97) % lines.size()]));
    });
  for (auto& th : threads) th.join();
  EXPECT_GT(t.cache_size(), 100u);
  for (size_t w = 0; w < results.size(); ++w)
    for (size_t i = 0; i < lines.size(); ++i)
      ASSERT_EQ(results[w][i], gpt2().encode(lines[(i + w * 97) % lines.size()])) << w << " " << i;
}
