// GPT-2's byte-level BPE: the PCRE2 pre-tokenisation split, the merges by rank (bpe_merge.h: linear
// memory, near-linear time, for one huge piece too), and a bounded, sharded cache of piece -> ids so
// that a corpus costs one BPE per distinct word.
#include "models/gpt2/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <type_traits>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "models/gpt2/bpe_files.h"
#include "models/gpt2/bpe_merge.h"

namespace lowrank::models::gpt2 {

using bpe::IdSink;
using bpe::merge_long_piece;
using bpe::MergeTable;

namespace {

// JavaScript's \s (the reference is a JS regex with the u flag): Unicode White_Space without
// U+0085, plus U+FEFF. PCRE2's UCP \s differs on exactly U+0085, U+180E and U+FEFF.
#define LR_GPT2_WS \
  "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
constexpr const char* kPattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" LR_GPT2_WS
                                 "\\p{L}\\p{N}]+|[" LR_GPT2_WS "]+(?![^" LR_GPT2_WS "])|[" LR_GPT2_WS "]+";
#undef LR_GPT2_WS

// Pieces longer than this are merged every time instead of cached: they are rare (long runs of
// letters or spaces) and would make the cache's memory depend on the input.
constexpr size_t kMaxCachedPiece = 64;
// 16 shards of at most 16384 pieces (~25 MB at most); a full shard is emptied and refilled, which
// keeps the bound without per-hit bookkeeping. The fortunes corpus has far fewer distinct pieces.
constexpr size_t kCacheShards = 16;
constexpr size_t kCacheShardCapacity = 16384;

class PieceCache {
 public:
  bool find(std::string_view piece, size_t hash, std::vector<int64_t>& out) const {
    const Shard& shard = shards_[hash % kCacheShards];
    std::shared_lock lock(shard.mutex);
    auto it = shard.map.find(piece);
    if (it == shard.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void insert(std::string_view piece, size_t hash, const int64_t* ids, size_t n) {
    Shard& shard = shards_[hash % kCacheShards];
    std::unique_lock lock(shard.mutex);
    if (shard.map.size() >= kCacheShardCapacity) shard.map.clear();
    shard.map.try_emplace(std::string(piece), ids, ids + n);
  }
  size_t size() const {
    size_t total = 0;
    for (const Shard& s : shards_) {
      std::shared_lock lock(s.mutex);
      total += s.map.size();
    }
    return total;
  }
  void clear() {
    for (Shard& s : shards_) {
      std::unique_lock lock(s.mutex);
      s.map.clear();
    }
  }

 private:
  struct Shard {
    mutable std::shared_mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, BytesHash, std::equal_to<>> map;
  };
  std::array<Shard, kCacheShards> shards_;
};

// Owns the match data of one encode() call (not shareable between threads, unlike the code).
struct MatchData {
  explicit MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {
    LR_CHECK(data != nullptr, "gpt2 tokenizer: out of memory for the PCRE2 match data");
  }
  ~MatchData() { pcre2_match_data_free(data); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* data;
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> tokens;
  std::array<int32_t, 256> byte_ids{};
  MergeTable merges;
  TokenIds id_of;
  int32_t eot = -1;
  pcre2_code* regex = nullptr;
  bool jit = false;
  mutable PieceCache cache;

  bool narrow_words = false;  // every id and rank fits 16 bits (GPT-2's files): bpe_long<uint16_t>

  explicit Impl(BpeFiles files);
  ~Impl() { pcre2_code_free(regex); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Calls emit(begin, end) for each piece of the valid UTF-8 `text`, in order; the pieces tile it.
  template <class Emit>
  void split_valid(std::string_view text, Emit&& emit) const;
  // The same, but stops when emit returns false.
  template <class Emit>
  void split_valid_until(std::string_view text, Emit&& emit) const;
  template <class Emit>
  void split(std::string_view text, Emit&& emit) const;
  void bpe_into(std::string_view piece, const IdSink& sink) const;
  // Appends the piece's ids to `buffer`, or (a piece too long to cache) flushes `buffer` into `sink`
  // and sends them there directly.
  void encode_piece(std::string_view piece, std::vector<int64_t>& buffer, const IdSink& sink) const;
  void encode_plain(std::string_view text, std::vector<int64_t>& buffer, const IdSink& sink) const;
};

Tokenizer::Impl::Impl(BpeFiles files)
    : tokens(std::move(files.tokens)), merges(files.merges), id_of(std::move(files.ids)), eot(files.eot_id) {
  for (size_t b = 0; b < 256; ++b) byte_ids[b] = files.byte_ids[b];
  narrow_words = tokens.size() <= 65536 && files.merges.size() < 65535;  // 65535 means "no pair"

  int error = 0;
  PCRE2_SIZE offset = 0;
  regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  LR_CHECK(regex != nullptr, "gpt2 tokenizer: PCRE2 rejects the split pattern at offset {}: {}", offset,
           pcre2_message(error));
  // Without JIT support (some platforms) the interpreter gives the same matches, slower.
  jit = pcre2_jit_compile(regex, PCRE2_JIT_COMPLETE) == 0;
}

template <class Emit>
void Tokenizer::Impl::split_valid_until(std::string_view text, Emit&& emit) const {
  if (text.empty()) return;
  MatchData md(regex);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md.data);
  size_t pos = 0;
  while (pos < text.size()) {
    // Anchored: every character is a letter, a number, whitespace or something else, so a piece
    // starts wherever the previous one ended. The subject is valid UTF-8 (checked by the caller).
    const int rc = jit ? pcre2_jit_match(regex, subject, text.size(), pos, 0, md.data, nullptr)
                       : pcre2_match(regex, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.data, nullptr);
    LR_CHECK(rc > 0, "gpt2 tokenizer: the split pattern failed at byte {} of {}: {}", pos, text.size(),
             pcre2_message(rc));
    const size_t end = ovector[1];
    LR_CHECK(ovector[0] == pos && end > pos, "gpt2 tokenizer: the split pattern matched [{}, {}) at byte {}",
             ovector[0], end, pos);
    if (!emit(pos, end)) return;
    pos = end;
  }
}

template <class Emit>
void Tokenizer::Impl::split_valid(std::string_view text, Emit&& emit) const {
  split_valid_until(text, [&](size_t b, size_t e) { return emit(b, e), true; });
}

template <class Emit>
void Tokenizer::Impl::split(std::string_view text, Emit&& emit) const {
  size_t valid = 0;
  while (valid < text.size()) {
    if (text.size() - valid >= 8) {  // ASCII eight bytes at a time: most text is
      uint64_t word;
      std::memcpy(&word, text.data() + valid, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        valid += 8;
        continue;
      }
    }
    if (static_cast<unsigned char>(text[valid]) < 0x80) {
      ++valid;
      continue;
    }
    const size_t len = utf8_sequence_length(text, valid);
    if (len == 0) break;
    valid += len;
  }
  if (valid == text.size()) return split_valid(text, emit);

  // Some bytes are not UTF-8. The pattern treats U+FFFD (what the reference sees for such a byte)
  // exactly as '!': both are neither letter, number nor space, and neither is an apostrophe. So
  // the split runs on a copy where each such byte is '!', which keeps every offset, and the copy is
  // made a window at a time: a match that ends kMargin bytes before the window's end is final (the
  // pattern looks at most one character past a match's end, and three characters past its start),
  // and a window without one grows. Memory: the window, not a copy of the text.
  constexpr size_t kWindow = size_t{1} << 20, kMargin = 16;
  std::string clean;
  size_t base = 0, window = kWindow;
  while (base < text.size()) {
    size_t end = std::min(text.size(), base + window);
    clean.clear();
    for (size_t i = base; i < end;) {
      const size_t len = utf8_sequence_length(text, i);
      if (len == 0) {
        clean += '!';
        ++i;
      } else {
        clean.append(text.substr(i, len));
        i += len;
      }
      if (i > end) end = i;  // a character that crosses the window's end is taken whole
    }
    const bool last = end == text.size();
    size_t done = 0;  // bytes of the window handed out
    bool released = false;
    split_valid_until(clean, [&](size_t b, size_t e) {
      if (!last && e + kMargin > clean.size()) return false;
      if (e - b > kWindow) {  // a huge piece: free the window before it is merged
        std::string().swap(clean);
        released = true;
      }
      emit(base + b, base + e);
      done = e;
      return !released;
    });
    if (done == 0) {
      window *= 2;  // the first piece needs a longer look
      continue;
    }
    base += done;
    window = kWindow;
  }
}

void Tokenizer::Impl::bpe_into(std::string_view piece, const IdSink& sink) const {
  if (piece.size() == 1) {
    const int64_t id = byte_ids[static_cast<unsigned char>(piece[0])];
    return sink(&id, 1);
  }
  if (narrow_words) return merge_long_piece<uint16_t>(piece, merges, byte_ids, sink);
  merge_long_piece<uint32_t>(piece, merges, byte_ids, sink);
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int64_t>& buffer, const IdSink& sink) const {
  auto append = [&](const int64_t* ids, size_t n) { buffer.insert(buffer.end(), ids, ids + n); };
  if (piece.size() > kMaxCachedPiece) {
    if (!buffer.empty()) sink(buffer.data(), buffer.size());
    buffer.clear();
    return bpe_into(piece, sink);
  }
  if (piece.size() == 1) return buffer.push_back(byte_ids[static_cast<unsigned char>(piece[0])]);
  const size_t hash = BytesHash{}(piece);
  if (cache.find(piece, hash, buffer)) return;
  const size_t start = buffer.size();
  bpe_into(piece, IdSink(append));
  cache.insert(piece, hash, buffer.data() + start, buffer.size() - start);
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int64_t>& buffer, const IdSink& sink) const {
  constexpr size_t kFlushAt = 4096;
  split(text, [&](size_t b, size_t e) {
    encode_piece(text.substr(b, e - b), buffer, sink);
    if (buffer.size() >= kFlushAt) sink(buffer.data(), buffer.size()), buffer.clear();
  });
}

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_files(const std::string& vocab_json, const std::string& merges) {
  return Tokenizer(std::make_shared<const Impl>(read_bpe_files(vocab_json, merges)));
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LR_CHECK(fs::is_directory(dir, ec),
           "gpt2 tokenizer: {} is not a folder (it should hold encoder.json + vocab.bpe "
           "or vocab.json + merges.txt; tools/setup installs them in {})",
           dir, default_dir());
  const std::pair<const char*, const char*> layouts[] = {{"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};
  for (const auto& [vocab, merges] : layouts) {
    const fs::path v = fs::path(dir) / vocab, m = fs::path(dir) / merges;
    const bool has_v = fs::exists(v, ec), has_m = fs::exists(m, ec);
    if (has_v && has_m) return from_files(v.string(), m.string());
    LR_CHECK(has_v == has_m, "gpt2 tokenizer: {} has {} but not {}", dir, has_v ? vocab : merges,
             has_v ? merges : vocab);
  }
  LR_FAIL(
      "gpt2 tokenizer: no GPT-2 vocabulary in {}: expected encoder.json + vocab.bpe or vocab.json + merges.txt "
      "(run tools/setup, or set LOWRANK_GPT2_VOCAB to a folder that has them)",
      dir);
}

std::string Tokenizer::default_dir() {
  const char* env = std::getenv("LOWRANK_GPT2_VOCAB");
  if (env != nullptr && *env != '\0') return env;
  const char* data = std::getenv("LOWRANK_DATA");  // where tools/setup put its data, when moved
  if (data != nullptr && *data != '\0') return std::string(data) + "/gpt2";
  return "/usr/local/share/lowrank/gpt2";
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int64_t> out;
  out.reserve(std::min<size_t>(text.size() / 3 + 4, size_t{1} << 20));  // grows from there for a big text
  encode_to(text, allow_special, [&](const int64_t* ids, size_t n) { out.insert(out.end(), ids, ids + n); });
  return out;
}

void Tokenizer::encode_to(std::string_view text, bool allow_special, const IdCallback& callback) const {
  auto forward = [&](const int64_t* ids, size_t n) { callback(ids, n); };
  const IdSink sink(forward);
  std::vector<int64_t> buffer;
  buffer.reserve(4096 + kMaxCachedPiece);
  if (!allow_special) {
    impl_->encode_plain(text, buffer, sink);
  } else {
    static constexpr std::string_view kEot = "<|endoftext|>";
    size_t pos = 0;
    while (true) {
      const size_t hit = text.find(kEot, pos);
      impl_->encode_plain(text.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos), buffer,
                          sink);
      if (hit == std::string_view::npos) break;
      const int64_t eot = impl_->eot;
      buffer.push_back(eot);
      pos = hit + kEot.size();
    }
  }
  if (!buffer.empty()) callback(buffer.data(), buffer.size());
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  const auto& tokens = impl_->tokens;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    LR_CHECK(id >= 0 && id < static_cast<int64_t>(tokens.size()),
             "gpt2 tokenizer: decode: token id {} (at position {}) is outside the vocabulary [0, {})", id, i,
             tokens.size());
    out += tokens[static_cast<size_t>(id)];
  }
  return out;
}

std::string Tokenizer::decode_token(int64_t id) const {
  const auto& tokens = impl_->tokens;
  LR_CHECK(id >= 0 && id < static_cast<int64_t>(tokens.size()),
           "gpt2 tokenizer: decode: token id {} is outside the vocabulary [0, {})", id, tokens.size());
  return tokens[static_cast<size_t>(id)];
}

int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->tokens.size());
}
int64_t Tokenizer::eot_id() const {
  return impl_->eot;
}

std::vector<std::string_view> Tokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string_view> pieces;
  impl_->split(text, [&](size_t b, size_t e) { pieces.push_back(text.substr(b, e - b)); });
  return pieces;
}

std::vector<int64_t> Tokenizer::bpe(std::string_view piece) const {
  std::vector<int64_t> out;
  auto append = [&](const int64_t* ids, size_t n) { out.insert(out.end(), ids, ids + n); };
  if (!piece.empty()) impl_->bpe_into(piece, IdSink(append));
  return out;
}

int64_t Tokenizer::token_id(std::string_view bytes) const {
  auto it = impl_->id_of.find(bytes);
  return it == impl_->id_of.end() ? -1 : it->second;
}

size_t Tokenizer::cache_size() const {
  return impl_->cache.size();
}
void Tokenizer::clear_cache() const {
  impl_->cache.clear();
}

}  // namespace lowrank::models::gpt2
