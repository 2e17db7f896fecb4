// The GPT-2 text pipeline with a byte-level toy encoder (id = byte, <|endoftext|> = 256): file
// listing, fortune documents, the validation split, the token cache (reuse, staleness, damage),
// training and validation batches, and the perplexity windows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "models/gpt2/text_data.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
namespace fs = std::filesystem;

namespace {

TextEncoder byte_encoder(uint64_t fingerprint = 1) {
  TextEncoder e;
  e.encode = [](std::string_view s) {
    std::vector<int64_t> ids;
    for (unsigned char c : s) ids.push_back(c);
    return ids;
  };
  e.eot_id = 256;
  e.vocab_size = 257;
  e.fingerprint = fingerprint;
  return e;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

// Decodes a stream back into its documents (the text between <|endoftext|> ids).
std::vector<std::string> documents_of(const std::vector<uint16_t>& ids) {
  std::vector<std::string> docs;
  for (uint16_t id : ids) {
    if (id == 256)
      docs.emplace_back();
    else
      docs.back() += static_cast<char>(id);
  }
  return docs;
}

class TextData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lowrank_text_data_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "corpus");
    std::string a, b;
    for (int i = 0; i < 30; ++i) a += "fortune A" + std::to_string(i) + " says hello\n%\n";
    for (int i = 0; i < 30; ++i) b += "fortune B" + std::to_string(i) + "\nsecond line\n%\n";
    write(dir_ / "corpus" / "a", a);
    write(dir_ / "corpus" / "b", b);
  }
  void TearDown() override { fs::remove_all(dir_); }

  TokenDataOptions options(double val = 0.2) const {
    TokenDataOptions o;
    o.files = list_text_files({(dir_ / "corpus").string()});
    o.val_fraction = val;
    o.cache_dir = (dir_ / "cache").string();
    return o;
  }
  fs::path dir_;
};

}  // namespace

TEST(Gpt2TextDocuments, SplitsAtPercentLines) {
  auto d = split_documents("one\n%\ntwo\nlines\n%\n\n  \n%\r\nthree 50% off\n%");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0], "one\n");
  EXPECT_EQ(d[1], "two\nlines\n");
  EXPECT_EQ(d[2], "three 50% off\n");
  auto whole = split_documents("no separators here\n%not one\n");
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0], "no separators here\n%not one\n");
  EXPECT_TRUE(split_documents("").empty());
  EXPECT_TRUE(split_documents("%\n%\n \n").empty());
}

TEST_F(TextData, ListsTextFilesSkippingIndexesAndHiddenFiles) {
  const fs::path c = dir_ / "corpus";
  write(c / "a.dat", "index");
  write(c / ".hidden", "x");
  fs::create_symlink("a", c / "a.u8");
  fs::create_directories(c / "sub");
  write(c / "sub" / "deeper", "not read: folders are not recursed");
  auto files = list_text_files({c.string(), (c / "b").string()});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(fs::path(files[0]).filename(), "a");
  EXPECT_EQ(fs::path(files[1]).filename(), "b");
  EXPECT_THROW(list_text_files({(dir_ / "missing").string()}), Error);
  fs::create_directories(dir_ / "empty");
  EXPECT_THROW(list_text_files({(dir_ / "empty").string()}), Error);
  EXPECT_THROW(list_text_files({}), Error);
}

TEST_F(TextData, EveryDocumentLandsOnOneSideAfterAnEndOfText) {
  TokenData d = load_token_data(byte_encoder(), options(0.2));
  EXPECT_EQ(d.documents, 60);
  EXPECT_GT(d.val_documents, 0);
  EXPECT_LT(d.val_documents, 30);
  EXPECT_EQ(d.train.front(), 256);
  EXPECT_EQ(d.val.front(), 256);
  auto train = documents_of(d.train), val = documents_of(d.val);
  EXPECT_EQ(static_cast<int64_t>(val.size()), d.val_documents);
  std::multiset<std::string> all(train.begin(), train.end());
  all.insert(val.begin(), val.end());
  std::multiset<std::string> want;
  for (int i = 0; i < 30; ++i) want.insert("fortune A" + std::to_string(i) + " says hello\n");
  for (int i = 0; i < 30; ++i) want.insert("fortune B" + std::to_string(i) + "\nsecond line\n");
  EXPECT_EQ(all, want);

  // No validation split: everything trains. A positive fraction always holds one document out.
  TokenData none = load_token_data(byte_encoder(), options(0.0));
  EXPECT_TRUE(none.val.empty());
  EXPECT_EQ(documents_of(none.train).size(), 60u);
  TokenData tiny = load_token_data(byte_encoder(), options(1e-9));
  EXPECT_EQ(tiny.val_documents, 1);
}

TEST_F(TextData, TheSplitFollowsTheTextNotTheFileOrder) {
  TokenData d = load_token_data(byte_encoder(), options(0.3));
  TokenDataOptions reversed = options(0.3);
  std::reverse(reversed.files.begin(), reversed.files.end());
  reversed.cache_dir.clear();
  TokenData r = load_token_data(byte_encoder(), reversed);
  auto v1 = documents_of(d.val), v2 = documents_of(r.val);
  EXPECT_EQ(std::multiset<std::string>(v1.begin(), v1.end()), std::multiset<std::string>(v2.begin(), v2.end()));
}

TEST_F(TextData, ThreadsEncodeTheSameStream) {
  TokenDataOptions one = options(), four = options();
  one.cache_dir.clear(), four.cache_dir.clear();
  four.threads = 4;
  TokenData a = load_token_data(byte_encoder(), one), b = load_token_data(byte_encoder(), four);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
}

TEST_F(TextData, TheCacheIsReusedAndRebuiltWhenStale) {
  TokenData first = load_token_data(byte_encoder(), options());
  EXPECT_FALSE(first.from_cache);
  ASSERT_TRUE(fs::is_regular_file(first.cache_path));
  TokenData second = load_token_data(byte_encoder(), options());
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.cache_path, first.cache_path);
  EXPECT_EQ(second.train, first.train);
  EXPECT_EQ(second.val, first.val);
  EXPECT_EQ(second.documents, first.documents);
  EXPECT_EQ(second.val_documents, first.val_documents);
  EXPECT_EQ(second.text_bytes, first.text_bytes);

  // Another vocabulary, another split or other text: another key, so a fresh encode.
  EXPECT_FALSE(load_token_data(byte_encoder(2), options()).from_cache);
  EXPECT_FALSE(load_token_data(byte_encoder(), options(0.1)).from_cache);
  std::ofstream(dir_ / "corpus" / "b", std::ios::app) << "one more\n%\n";
  TokenData changed = load_token_data(byte_encoder(), options());
  EXPECT_FALSE(changed.from_cache);
  EXPECT_NE(changed.key, first.key);
  EXPECT_EQ(changed.documents, 61);
}

TEST_F(TextData, ADamagedCacheIsRebuiltNeverTrusted) {
  TokenData first = load_token_data(byte_encoder(), options());
  const std::string path = first.cache_path;
  TokenData got;
  std::string why;
  ASSERT_TRUE(read_token_cache(path, first.key, got, why)) << why;
  EXPECT_FALSE(read_token_cache(path, first.key + 1, got, why));
  EXPECT_NE(why.find("other text"), std::string::npos) << why;

  // One flipped token: the checksum catches it, and load_token_data encodes again.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(80);
    f.put('\x7f');
  }
  EXPECT_FALSE(read_token_cache(path, first.key, got, why));
  EXPECT_NE(why.find("corrupt"), std::string::npos) << why;
  TokenData rebuilt = load_token_data(byte_encoder(), options());
  EXPECT_FALSE(rebuilt.from_cache);
  EXPECT_EQ(rebuilt.train, first.train);
  EXPECT_TRUE(load_token_data(byte_encoder(), options()).from_cache);

  // Truncated, and not a cache at all.
  fs::resize_file(path, fs::file_size(path) - 3);
  EXPECT_FALSE(read_token_cache(path, first.key, got, why));
  EXPECT_NE(why.find("size"), std::string::npos) << why;
  write(path, "short");
  EXPECT_FALSE(read_token_cache(path, first.key, got, why));
  write(path, std::string(200, 'x'));
  EXPECT_FALSE(read_token_cache(path, first.key, got, why));
  EXPECT_NE(why.find("not a token cache"), std::string::npos) << why;
  EXPECT_FALSE(load_token_data(byte_encoder(), options()).from_cache);
}

TEST_F(TextData, EncoderErrorsAndBadOptionsThrow) {
  TextEncoder bad = byte_encoder();
  bad.encode = [](std::string_view) { return std::vector<int64_t>{300}; };
  EXPECT_THROW(load_token_data(bad, options()), Error);
  TextEncoder big = byte_encoder();
  big.vocab_size = 70000;
  EXPECT_THROW(load_token_data(big, options()), Error);
  EXPECT_THROW(load_token_data(byte_encoder(), options(1.0)), Error);
  write(dir_ / "blank", "\n%\n");
  TokenDataOptions o;
  o.files = {(dir_ / "blank").string()};
  EXPECT_THROW(load_token_data(byte_encoder(), o), Error);
}

TEST(Gpt2Batches, RandomWindowsArePureFunctionsOfSeedAndStep) {
  std::vector<uint16_t> tokens;
  for (int i = 0; i < 500; ++i) tokens.push_back(static_cast<uint16_t>(i));  // id = position
  Batch a = random_batch(tokens, 4, 16, 7, 3), b = random_batch(tokens, 4, 16, 7, 3);
  ASSERT_EQ(a.inputs.shape(), (Shape{4, 16}));
  EXPECT_EQ(a.inputs.to_vector<int64_t>(), b.inputs.to_vector<int64_t>());
  EXPECT_NE(a.inputs.to_vector<int64_t>(), random_batch(tokens, 4, 16, 7, 4).inputs.to_vector<int64_t>());
  EXPECT_NE(a.inputs.to_vector<int64_t>(), random_batch(tokens, 4, 16, 8, 3).inputs.to_vector<int64_t>());
  std::set<int64_t> starts;
  for (int64_t step = 0; step < 50; ++step) {
    Batch s = random_batch(tokens, 4, 16, 7, step);
    auto x = s.inputs.to_vector<int64_t>(), y = s.targets.to_vector<int64_t>();
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(y[i], x[i] + 1);  // targets are the next tokens
      if (i % 16) {
        ASSERT_EQ(x[i], x[i - 1] + 1);  // a window is contiguous
      }
    }
    for (size_t r = 0; r < 4; ++r) {
      starts.insert(x[r * 16]);
      ASSERT_LE(x[r * 16] + 16, 499);
    }
  }
  EXPECT_GT(starts.size(), 150u);  // 200 draws over 484 starts: spread, not stuck
  EXPECT_THROW(random_batch(std::vector<uint16_t>(16, 1), 1, 16, 0, 0), Error);
  EXPECT_NO_THROW(random_batch(std::vector<uint16_t>(17, 1), 1, 16, 0, 0));
}

TEST(Gpt2Batches, ValidationWindowsAreConsecutive) {
  std::vector<uint16_t> tokens;
  for (int i = 0; i < 50; ++i) tokens.push_back(static_cast<uint16_t>(i));
  auto batches = sequential_batches(tokens, 2, 10, 0);  // (50 - 1) / 10 = 4 windows: 2 batches of 2
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].inputs.to_vector<int64_t>()[0], 20);  // window 2 starts at 2 * 10
  EXPECT_EQ(batches[1].targets.to_vector<int64_t>()[19], 40);
  EXPECT_EQ(sequential_batches(tokens, 3, 10, 0).back().inputs.size(0), 1);
  EXPECT_EQ(sequential_batches(tokens, 2, 10, 3).size(), 2u);
  EXPECT_EQ(sequential_batches(tokens, 2, 10, 3).back().inputs.size(0), 1);
  EXPECT_TRUE(sequential_batches(tokens, 2, 49, 0).size() == 1);
  EXPECT_TRUE(sequential_batches(tokens, 2, 50, 0).empty());
}

TEST(Gpt2Batches, SlidingWindowsScoreEveryTokenOnce) {
  for (auto [n, ctx, stride] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {2, 8, 4}, {9, 8, 8}, {10, 8, 8}, {100, 8, 4}, {100, 8, 1}, {101, 16, 5}, {7, 16, 16}}) {
    auto w = sliding_windows(n, ctx, stride);
    std::vector<int> scored(static_cast<size_t>(n), 0);
    for (size_t k = 0; k < w.size(); ++k) {
      ASSERT_LE(w[k].end - w[k].begin, ctx + 1);
      ASSERT_GT(w[k].score_from, w[k].begin);
      if (k > 0) {
        ASSERT_GE(w[k].score_from - w[k].begin, ctx - stride + 1) << "context " << n << " " << ctx;
      }
      for (int64_t p = w[k].score_from; p < w[k].end; ++p) ++scored[static_cast<size_t>(p)];
    }
    EXPECT_EQ(scored[0], 0);
    for (int64_t p = 1; p < n; ++p) ASSERT_EQ(scored[static_cast<size_t>(p)], 1) << n << " " << ctx << " " << p;
    EXPECT_EQ(w.back().end, n);
  }
  EXPECT_THROW(sliding_windows(100, 8, 0), Error);
  EXPECT_THROW(sliding_windows(100, 8, 9), Error);
  EXPECT_THROW(sliding_windows(1, 8, 4), Error);
}
