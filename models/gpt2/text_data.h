// Text corpus -> token stream -> training batches for GPT-2: text files split into documents
// (fortune files at their "%" lines), each document encoded after an <|endoftext|>, a held-out
// validation split by document, a binary token cache that is rebuilt when anything it was made
// from changes, random training windows that are a pure function of (seed, step), and the
// windows of validation and perplexity evaluation.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace lowrank::models::gpt2 {

// The Debian `fortunes` package's folder: the default corpus.
inline constexpr const char* kDefaultCorpusDir = "/usr/share/games/fortunes";

// Expands `paths` into a sorted, de-duplicated list of text files: a file is taken as given; a
// folder contributes its regular files (not recursively), skipping hidden files and the fortune
// package's index (.dat) and UTF-8 link (.u8) files. Throws naming the path when one does not
// exist, and when nothing is left.
std::vector<std::string> list_text_files(const std::vector<std::string>& paths);

// Splits a file's text into documents at lines that hold only "%" (the fortune format; a file
// without such lines is one document). Documents that are empty or only whitespace are dropped.
std::vector<std::string_view> split_documents(std::string_view text);

// 64-bit FNV-1a, continuing from `h`.
uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull);

// A fingerprint of the BPE files in a vocabulary folder (encoder.json, vocab.bpe, vocab.json,
// merges.txt: whichever exist), so a token cache made with other files is not reused.
uint64_t vocab_fingerprint(const std::string& vocab_dir);

// What the data pipeline needs of a tokenizer (models/gpt2/tokenizer.h's Tokenizer provides it;
// tests can plug in a byte-level toy).
struct TextEncoder {
  std::function<std::vector<int64_t>(std::string_view)> encode;  // must be thread-safe
  int64_t eot_id = 50256;
  int64_t vocab_size = 50257;  // at most 65536: the cache stores uint16 ids
  uint64_t fingerprint = 0;    // changes whenever encode would give other ids
};

struct TokenDataOptions {
  std::vector<std::string> files;  // from list_text_files
  // The share of documents held out for validation, chosen by a hash of each document's text (so
  // duplicates land on the same side and adding files does not move the others). With at least
  // two documents and a positive fraction, at least one goes each way.
  double val_fraction = 0.05;
  std::string cache_dir;  // where tokens-<key>.bin lives; empty: no cache
  int threads = 1;        // documents are encoded on this many threads
};

struct TokenData {
  std::vector<uint16_t> train, val;  // <|endoftext|> doc <|endoftext|> doc ...
  int64_t documents = 0, val_documents = 0;
  int64_t text_bytes = 0;  // size of the files read
  uint64_t key = 0;        // what the cache is keyed on: format, vocab, split, every file's path and bytes
  std::string cache_path;  // empty without a cache
  bool from_cache = false;
  double seconds = 0;  // reading + (encoding or cache loading)
};

// Reads the files, and either loads the matching cache or encodes and writes it (atomically). A
// cache that is stale, truncated or corrupt is rebuilt, never trusted.
TokenData load_token_data(const TextEncoder& encoder, const TokenDataOptions& options);

// The cache file itself (exposed for tests): a 72-byte little-endian header ("LRGPT2TK", format
// version, key, vocab fingerprint, counts), the train then val ids as uint16, an FNV-1a checksum of
// those ids. read_token_cache returns false (and says why in `why`) when the file is missing, made
// for another key, or damaged.
inline constexpr uint32_t kTokenCacheVersion = 1;
void write_token_cache(const std::string& path, const TokenData& data, uint64_t vocab_fp);
bool read_token_cache(const std::string& path, uint64_t key, TokenData& out, std::string& why);

struct Batch {
  Tensor inputs, targets;  // int64 [B, T]; targets are the inputs shifted by one token
};

// Training batch number `step` (0-based): B windows of T + 1 tokens starting at positions drawn
// from Philox keyed by `seed`, so a resumed run sees the same batches from the step count alone.
// Throws when the stream holds fewer than T + 1 tokens.
Batch random_batch(const std::vector<uint16_t>& tokens, int64_t batch, int64_t seq_len, uint64_t seed, int64_t step);

// Validation: consecutive, non-overlapping windows of T + 1 tokens from the start of the stream
// (at most max_windows of them; 0: all), in batches of up to B windows. Empty when the stream
// holds fewer than T + 1 tokens.
std::vector<Batch> sequential_batches(const std::vector<uint16_t>& tokens, int64_t batch, int64_t seq_len,
                                      int64_t max_windows = 0);

// Perplexity over a long stream with a model of context n_ctx (the Hugging Face recipe): windows
// of up to n_ctx + 1 tokens start every `stride` tokens; window k predicts tokens (begin, end) and
// scores only those from score_from on, so every token after the first is scored exactly once,
// each with at least n_ctx - stride tokens of context (fewer only at the start).
struct EvalWindow {
  int64_t begin = 0, end = 0;  // tokens [begin, end): inputs [begin, end - 1), targets [begin + 1, end)
  int64_t score_from = 0;      // first target position (absolute) that counts
};
std::vector<EvalWindow> sliding_windows(int64_t n_tokens, int64_t n_ctx, int64_t stride);

}  // namespace lowrank::models::gpt2
