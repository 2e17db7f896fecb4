// GPT-2 tokenizer on hostile input: the merge of one piece (tokenizer.cpp's bpe_long) equals a
// plain quadratic BPE written here on many random pieces of synthetic vocabularies (merge lists in
// and out of creation order, 16-bit and 32-bit words), on long pieces that span several blocks and
// levels of its tree, and on GPT-2's own files; its memory stays near 2 bytes per input byte; the
// windowed split of text that is not UTF-8 finds exactly the pieces of the unwindowed one; and
// encode_to streams what encode returns.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#include <malloc.h>
#define LR_TEST_MALLINFO 1
#endif

#include "models/gpt2/bpe_files.h"
#include "models/gpt2/tokenizer.h"
#include "support/files.h"
#include "support/gpt2.h"

using namespace lowrank;
using models::gpt2::Tokenizer;
using namespace test;

namespace {

// A byte-level BPE vocabulary made up here: the 256 bytes, then merges of random pairs of tokens
// over a small alphabet (so that long pieces keep merging), in a random or creation order.
struct Synthetic {
  std::vector<std::string> tokens;                          // id -> bytes
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::map<std::string, int64_t> id;

  Synthetic() = default;
  Synthetic(std::mt19937& rng, const std::string& alphabet, size_t n_merges, size_t max_len, bool shuffled) {
    for (int b = 0; b < 256; ++b) add(std::string(1, static_cast<char>(b)));
    std::vector<std::string> pool;
    for (char c : alphabet) pool.emplace_back(1, c);
    if (!alphabet.empty() && n_merges > 0) {  // a pair of one token twice: runs overlap ("aaa")
      merges.emplace_back(pool[0], pool[0]);
      add(pool[0] + pool[0]);
      pool.push_back(pool[0] + pool[0]);
    }
    for (size_t tries = 0; merges.size() < n_merges && tries < 100 * n_merges; ++tries) {
      const std::string& a = pool[rng() % pool.size()];
      const std::string& b = pool[rng() % pool.size()];
      const std::string ab = a + b;
      if (ab.size() > max_len || id.count(ab)) continue;
      merges.emplace_back(a, b);
      add(ab);
      pool.push_back(ab);
    }
    if (shuffled) std::shuffle(merges.begin(), merges.end(), rng);
    add("<|endoftext|>");
  }
  void add(const std::string& t) {
    id[t] = static_cast<int64_t>(tokens.size());
    tokens.push_back(t);
  }
  static std::string symbols(const std::string& bytes) {
    std::string s;
    for (unsigned char b : bytes) s += utf8(models::gpt2::byte_to_symbol(b));
    return s;
  }
  Tokenizer load(const TempDir& dir) const {
    nlohmann::json v = nlohmann::json::object();
    for (size_t i = 0; i < tokens.size(); ++i)
      v[tokens[i] == "<|endoftext|>" ? tokens[i] : symbols(tokens[i])] = static_cast<int64_t>(i);
    std::string m = "#version: 0.2\n";
    for (const auto& [a, b] : merges) m += symbols(a) + " " + symbols(b) + "\n";
    write_bytes(dir.file("vocab.json"), v.dump());
    write_bytes(dir.file("merges.txt"), m);
    return Tokenizer::from_dir(dir.path().string());
  }

  // GPT-2's bpe() as OpenAI's encoder.py writes it: find the lowest-ranked adjacent pair, merge
  // every occurrence of it left to right, repeat. O(rounds * n), on ids for speed.
  std::vector<int64_t> reference(const std::string& piece) const {
    if (rank_.empty()) {
      for (size_t r = 0; r < merges.size(); ++r) {
        const auto& [a, b] = merges[r];
        rank_[key(id.at(a), id.at(b))] = {r, id.at(a + b)};
      }
    }
    std::vector<int64_t> word;
    for (char c : piece) word.push_back(id.at(std::string(1, c)));
    while (word.size() > 1) {
      size_t best = SIZE_MAX;
      uint64_t best_key = 0;
      int64_t made = -1;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = rank_.find(key(word[i], word[i + 1]));
        if (it != rank_.end() && it->second.first < best)
          best = it->second.first, best_key = it->first, made = it->second.second;
      }
      if (best == SIZE_MAX) break;
      std::vector<int64_t> next;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && key(word[i], word[i + 1]) == best_key) {
          next.push_back(made);
          i += 2;
        } else {
          next.push_back(word[i++]);
        }
      }
      word = std::move(next);
    }
    return word;
  }

 private:
  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }
  mutable std::unordered_map<uint64_t, std::pair<size_t, int64_t>> rank_;  // pair -> (rank, merged id)
};

std::string random_piece(std::mt19937& rng, const std::string& alphabet, size_t n) {
  std::string s(n, ' ');
  for (char& c : s) c = alphabet[rng() % alphabet.size()];
  return s;
}

// A vocabulary of `n_merges` merges over `alphabet` (tokens up to `max_len` bytes, ranks in creation
// order or shuffled) drawn from `seed`, loaded as a Tokenizer; then every piece length from 2 to 70
// (one block and a bit), random lengths up to several blocks, and pieces long enough for two and
// three levels of the block tree, each merged as the reference merges it.
void expect_merges_equal_reference(unsigned seed, const std::string& alphabet, size_t n_merges, size_t max_len,
                                   bool shuffled) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const Synthetic syn(rng, alphabet, n_merges, max_len, shuffled);
  TempDir dir;
  const Tokenizer tok = syn.load(dir);
  std::vector<size_t> lengths;
  for (size_t n = 2; n <= 70; ++n) lengths.push_back(n);
  for (int i = 0; i < 300; ++i) lengths.push_back(2 + rng() % 400);
  lengths.insert(lengths.end(), {4095, 4096, 4097, 9000, 300000});
  size_t checked = 0;
  for (size_t n : lengths) {
    // Runs of one letter and of two letters are the overlapping cases ("aaa" with "a a").
    const std::string sub = n % 5 == 0 ? alphabet.substr(0, 1) : n % 5 == 1 ? alphabet.substr(0, 2) : alphabet;
    const std::string piece = random_piece(rng, sub, n);
    const auto want = syn.reference(piece);
    ASSERT_EQ(tok.bpe(piece), want) << "piece of " << n << ": " << piece.substr(0, 200);
    ++checked;
  }
  EXPECT_EQ(checked, lengths.size());
}

}  // namespace

TEST(Gpt2TokenizerHostile, MergesEqualAQuadraticReferenceInCreationOrder) {
  expect_merges_equal_reference(11, "abcd", 120, 12, /*shuffled=*/false);
}

TEST(Gpt2TokenizerHostile, MergesEqualAQuadraticReferenceOutOfCreationOrder) {
  // Ranks in a random order: merges of a round make pairs of lower rank, which must wait.
  for (unsigned seed : {5u, 6u, 7u}) expect_merges_equal_reference(seed, "xyz", 80, 9, /*shuffled=*/true);
}

TEST(Gpt2TokenizerHostile, WideVocabulariesMergeWithThirtyTwoBitWords) {
  // More than 65536 tokens: ids and ranks no longer fit the 16-bit words.
  std::mt19937 rng(21);
  std::string alphabet;
  for (int c = 0; c < 256; ++c) alphabet += static_cast<char>(c);
  Synthetic syn(rng, "pq", 40, 8, /*shuffled=*/true);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) {
      const std::string ab = {static_cast<char>(a), static_cast<char>(b)};
      if (!syn.id.count(ab)) pairs.emplace_back(std::string(1, ab[0]), std::string(1, ab[1]));
    }
  std::shuffle(pairs.begin(), pairs.end(), rng);
  const std::string eot = "<|endoftext|>";
  syn.tokens.pop_back();
  syn.id.erase(eot);
  for (const auto& [a, b] : pairs) {
    syn.merges.emplace_back(a, b);
    syn.add(a + b);
  }
  syn.add(eot);
  ASSERT_GT(syn.tokens.size(), 65536u);
  TempDir dir;
  const Tokenizer tok = syn.load(dir);
  for (int i = 0; i < 30; ++i) {
    const std::string piece = random_piece(rng, i % 2 ? alphabet : "pq", 2 + rng() % 2000);
    ASSERT_EQ(tok.bpe(piece), syn.reference(piece)) << i;
  }
}

TEST(Gpt2TokenizerHostile, LongGpt2PiecesEqualTheStringBpe) {
  REQUIRE_VOCAB();
  // The quadratic reference again, on GPT-2's merges: a few thousand letters, digits, bytes.
  Synthetic none;
  const Tokenizer& t = gpt2();
  for (int64_t i = 0; i < t.vocab_size(); ++i) none.add(t.decode_token(i));
  const auto lines = split_lines(read_bytes(vocab_dir() + "/vocab.bpe"));
  auto to_bytes = [](const std::string& sym) {
    std::string out;
    for (size_t i = 0; i < sym.size();) {
      const size_t len = static_cast<unsigned char>(sym[i]) < 0x80 ? 1 : 2;
      uint32_t cp = len == 1 ? static_cast<unsigned char>(sym[i])
                             : ((static_cast<unsigned char>(sym[i]) & 0x1F) << 6) |
                                   (static_cast<unsigned char>(sym[i + 1]) & 0x3F);
      out += static_cast<char>(models::gpt2::symbol_to_byte(cp));
      i += len;
    }
    return out;
  };
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t sp = lines[i].find(' ');
    if (sp == std::string::npos) continue;
    none.merges.emplace_back(to_bytes(lines[i].substr(0, sp)), to_bytes(lines[i].substr(sp + 1)));
  }
  ASSERT_EQ(none.merges.size(), 50000u);
  std::mt19937 rng(4);
  std::string bytes;
  for (int c = 0; c < 256; ++c) bytes += static_cast<char>(c);
  for (const std::string& alphabet : {std::string("abcdefghijklmnopqrstuvwxyz"), std::string("0123456789"),
                                      std::string("a"), std::string("ab "), bytes}) {
    const std::string piece = random_piece(rng, alphabet, 3000);
    EXPECT_EQ(t.bpe(piece), none.reference(piece)) << alphabet;
  }
}

TEST(Gpt2TokenizerHostile, OneHugePieceNeedsAboutTwoBytesPerByte) {
  REQUIRE_VOCAB();
#ifndef LR_TEST_MALLINFO
  GTEST_SKIP() << "needs glibc's mallinfo2 (not under ASan's allocator)";
#else
  // The heap bytes the tokenizer holds while it hands out the ids of a 4 MB piece (the merge's
  // scratch is at its largest then), with the text itself not counted: 16-bit words, a bit per
  // byte, the block tree. The earlier heap of candidates needed 16 bytes per byte and more.
  const Tokenizer& t = gpt2();
  std::mt19937 rng(8);
  for (const std::string& alphabet : {std::string("a"), std::string("abcdefghijklmnopqrstuvwxyz")}) {
    const std::string piece = random_piece(rng, alphabet, size_t{4} << 20);
    t.encode("warm up the scratch and the cache");
    const auto before = mallinfo2();
    const size_t held_before = before.uordblks + before.hblkhd;
    size_t most = 0, ids = 0;
    t.encode_to(piece, false, [&](const int64_t*, size_t n) {
      const auto now = mallinfo2();
      most = std::max(most, now.uordblks + now.hblkhd - held_before);
      ids += n;
    });
    EXPECT_GT(ids, 0u);
    EXPECT_LE(most, piece.size() * 5 / 2) << alphabet.size() << " letters: " << most << " bytes for " << piece.size();
    EXPECT_GE(most, piece.size() * 2) << "the measurement missed the scratch";
  }
#endif
}

TEST(Gpt2TokenizerHostile, EncodeToStreamsWhatEncodeReturns) {
  REQUIRE_VOCAB();
  const Tokenizer& t = gpt2();
  std::mt19937 rng(9);
  std::string text;
  while (text.size() < 200000) text += random_piece(rng, "abc  '!\n\xff", 1 + rng() % 100);
  const std::string head = text.substr(0, 5000);
  text.append(100000, 'z').append("<|endoftext|>").append(head);
  for (bool special : {false, true}) {
    std::vector<int64_t> streamed;
    size_t calls = 0;
    t.encode_to(text, special, [&](const int64_t* ids, size_t n) {
      streamed.insert(streamed.end(), ids, ids + n);
      ++calls;
    });
    EXPECT_EQ(streamed, t.encode(text, special));
    EXPECT_GT(calls, 2u);  // in batches, not one array at the end
  }
}

TEST(Gpt2TokenizerHostile, WindowedSplitOfInvalidBytesFindsTheSamePieces) {
  REQUIRE_VOCAB();
  // Text that is not UTF-8 is split a window (1 MB) at a time; each invalid byte splits as '!'
  // would. So the pieces must be exactly those of the same text with '!' for each invalid byte,
  // which is split whole. Structures that look past a match (contractions, runs of spaces before a
  // word) are put at every offset around the first window's end; a piece longer than a window
  // (the window grows and is freed before the merge) comes last.
  const Tokenizer& t = gpt2();
  const std::vector<std::string> parts = {"'re", "'ll", " x", "  ",           "   y", "\xff", "\xc3",         "'",
                                          "r",   "e",   "12", "\xe4\xb8\xad", " !",   "\n\n", "\xe2\x80\xa8", "ab"};
  std::mt19937 rng(10);
  auto clean_of = [](std::string s) {
    for (size_t i = 0; i < s.size();) {
      const size_t len = models::gpt2::utf8_sequence_length(s, i);
      if (len == 0) {
        s[i++] = '!';
      } else {
        i += len;
      }
    }
    return s;
  };
  auto offsets = [](const std::string& s, const std::vector<std::string_view>& pieces) {
    std::vector<size_t> out;
    for (auto p : pieces) out.push_back(static_cast<size_t>(p.data() - s.data()));
    return out;
  };
  const size_t window = size_t{1} << 20;
  for (int shift = 0; shift < 24; ++shift) {
    std::string text(1, '\xff');
    text.append(window - 40 + static_cast<size_t>(shift), 'w');
    while (text.size() < window + 200) text += parts[rng() % parts.size()];
    const std::string clean = clean_of(text);
    ASSERT_EQ(offsets(text, t.pre_tokenize(text)), offsets(clean, t.pre_tokenize(clean))) << shift;
  }
  std::string big(3 * window, '\xff');
  big.append(" tail'll").append(window + 7, ' ').append("x\xfe");
  const std::string clean = clean_of(big);
  EXPECT_EQ(offsets(big, t.pre_tokenize(big)), offsets(clean, t.pre_tokenize(clean)));
  EXPECT_EQ(t.decode(t.encode(big)), big);
}
