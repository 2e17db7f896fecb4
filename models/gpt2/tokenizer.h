// GPT-2's byte-level BPE tokenizer: text bytes <-> token ids, exactly as OpenAI's encoder (checked
// id for id against the npm package gpt-3-encoder@1.1.4 on a committed fixture).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lowrank::models::gpt2 {

// encode() splits the text into pieces with GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (PCRE2, UTF + UCP, JIT-compiled once per tokenizer; `\s` is JavaScript's whitespace set, as
// in the reference: Unicode White_Space without U+0085, plus U+FEFF), then merges each piece's bytes
// by rank. The Unicode classes come from the system's PCRE2 (10.42: Unicode 14), the reference's
// from Node's ICU; they differ only on characters assigned after Unicode 14.
//
// Bytes that are not UTF-8 (a stray continuation byte, a truncated, overlong or surrogate sequence)
// are kept, byte for byte. The reference only sees JavaScript strings, where such bytes would have
// become U+FFFD; so for the split each invalid byte counts as one U+FFFD (a symbol character), and
// the pieces are those the reference finds in the lossily decoded text, each replacement character
// standing for its original bytes (runs of symbols join either way): "a\xff\xfe!" splits into "a"
// and "\xff\xfe!". The pieces' raw bytes are then merged as usual; every byte has a token.
//
// Guarantees: decode(encode(s)) == s for every byte string s (also invalid UTF-8, NUL bytes,
// "<|endoftext|>" in any form). encode(decode(ids)) == ids for every canonical sequence, i.e. one
// that a single encode() call produced (with the same allow_special); a non-canonical sequence,
// such as "a" "b" where BPE makes "ab", or two encodings concatenated across a piece boundary, is
// re-encoded canonically instead. encode() is deterministic and thread-safe (the piece cache is
// sharded and locked); a Tokenizer is cheap to copy (copies share the tables and the cache).
//
// "<|endoftext|>" (eot_id(), 50256): encode(text) treats text as plain text, as the npm encoder
// does, so the string "<|endoftext|>" in a document becomes ordinary tokens. encode(text,
// /*allow_special=*/true) turns each literal "<|endoftext|>" into eot_id() instead (the tools'
// document separator); the text between occurrences is encoded as if each part stood alone.
class Tokenizer {
 public:
  // `dir` holds encoder.json + vocab.bpe (OpenAI's names, tried first) or vocab.json + merges.txt
  // (Hugging Face's). A missing, truncated or inconsistent file is one lowrank::Error naming it.
  static Tokenizer from_dir(const std::string& dir);
  static Tokenizer from_files(const std::string& vocab_json, const std::string& merges);
  // $LOWRANK_GPT2_VOCAB when set and not empty, else $LOWRANK_DATA/gpt2 (tools/setup's data folder
  // when moved), else /usr/local/share/lowrank/gpt2 (tools/setup's default).
  static std::string default_dir();

  std::vector<int64_t> encode(std::string_view text, bool allow_special = false) const;
  // The same ids, handed to `callback` in order a batch at a time (the pointer is valid during the
  // call only), so that a caller that writes them out needs no array of all of them: memory stays
  // a few bytes per input byte even for one huge piece (see bpe_long in tokenizer.cpp).
  using IdCallback = std::function<void(const int64_t* ids, size_t n)>;
  void encode_to(std::string_view text, bool allow_special, const IdCallback& callback) const;
  // Raw bytes: the concatenation of the tokens' bytes (may be invalid UTF-8 when the ids cut a
  // character). An id outside [0, vocab_size()) is an error.
  std::string decode(const std::vector<int64_t>& ids) const;
  std::string decode_token(int64_t id) const;  // one token's bytes, for streaming

  int64_t vocab_size() const;
  int64_t eot_id() const;  // <|endoftext|> = 50256

  // The pieces encode() merges independently, as views into `text` (they tile it, in order).
  std::vector<std::string_view> pre_tokenize(std::string_view text) const;
  // The BPE merges of one piece's bytes alone, without the split (for tests and inspection).
  std::vector<int64_t> bpe(std::string_view piece) const;
  // The id of the token whose bytes are exactly `bytes`, or -1.
  int64_t token_id(std::string_view bytes) const;
  // Pieces in the word -> ids cache (bounded: see tokenizer.cpp); clear_cache() empties it.
  size_t cache_size() const;
  void clear_cache() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace lowrank::models::gpt2
