// GPT-2's byte-level BPE: the PCRE2 pre-tokenisation split, merges by rank in rounds over a block
// tree (linear memory, near-linear time, for one huge piece too), and a bounded, sharded cache of
// piece -> ids so that a corpus costs one BPE per distinct word.
#include "models/gpt2/tokenizer.h"

#include <algorithm>
#include <array>
#include <bit>
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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "models/gpt2/bpe_files.h"

namespace lowrank::models::gpt2 {

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
// Per-thread BPE scratch space is kept between pieces up to this many symbols.
constexpr size_t kKeptScratch = 4096;

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

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// (left, right) -> (rank, merged) in one flat open-addressing table: BPE looks up every adjacent
// pair, and a probe here touches one cache line where std::unordered_map chases a node.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = -1, merged = -1;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  explicit MergeTable(const std::vector<BpeMerge>& merges) {
    size_t capacity = 16;
    while (capacity < merges.size() * 2) capacity *= 2;
    mask_ = capacity - 1;
    entries_.assign(capacity, Entry{});
    for (size_t r = 0; r < merges.size(); ++r) {
      const uint64_t key = pair_key(merges[r].left, merges[r].right);
      size_t i = slot(key);
      while (entries_[i].key != kEmpty) i = (i + 1) & mask_;  // keys are unique (checked on reading)
      entries_[i] = {key, static_cast<int32_t>(r), merges[r].merged};
    }
  }
  // nullptr when the pair has no merge.
  const Entry* find(int32_t left, int32_t right) const {
    const uint64_t key = pair_key(left, right);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const Entry& e = entries_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<Entry> entries_;
  size_t mask_ = 0;
};

// A non-owning reference to a callable (const int64_t* ids, size_t n) that takes ids in order.
class IdSink {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, IdSink>) explicit IdSink(F& f)
      : target_(&f), call_([](void* t, const int64_t* ids, size_t n) { (*static_cast<F*>(t))(ids, n); }) {}
  void operator()(const int64_t* ids, size_t n) const { call_(target_, ids, n); }

 private:
  void* target_;
  void (*call_)(void*, const int64_t*, size_t);
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
  template <class Word>
  void bpe_long(std::string_view piece, const IdSink& sink) const;
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

// Merges by rank as GPT-2's bpe(): repeatedly take the lowest-ranked adjacent pair and merge all of
// its occurrences left to right (one "round" per rank). Exact for any merge list, also one whose
// ranks are not in creation order, and near-linear with a small constant, because a hostile input
// can be one huge piece (50 MB of letters without a space):
//
// - A symbol is a span [i, end) of the piece; a bit per byte marks where symbols start. The word
//   array v (uint16 for GPT-2's 50257 tokens and 50000 merges, uint32 for larger files) holds at a
//   symbol's start the rank of the pair it begins (kNone when there is none) and, at its second
//   byte, the symbol's token id; a one-byte symbol's id is its byte's. So the state is 2 bytes per
//   input byte (4 for a larger vocabulary) plus 1/8 for the bits.
// - Blocks of 64 bytes (one word of bits) keep the least rank in them, and a 64-ary tree over the
//   blocks their minimum: a round finds its rank R at the root and then its blocks, in order, by a
//   search of that tree; within a block it takes the starts whose rank is R, left to right, and
//   merges each one that a previous merge of the round has not taken apart. A merge never makes a
//   pair of rank R (the merged token is longer than either half), so no position is visited twice,
//   and pairs it makes (also ones of lower rank) wait for the next round, as in the reference. The
//   blocks a round touched are recomputed, with their ancestors, when the round ends.
namespace {

constexpr size_t kBlockShift = 6, kBlock = size_t{1} << kBlockShift;  // bytes per block = bits per word

template <class Word>
struct BpeScratch {
  std::vector<Word> v;
  std::vector<uint64_t> starts;
  std::vector<std::vector<Word>> levels;  // levels[0][b]: least rank in block b; levels[k+1]: of 64 of levels[k]
  std::vector<uint32_t> dirty;            // blocks changed in this round (each once)
  std::vector<uint8_t> is_dirty;

  void release() {
    std::vector<Word>().swap(v);
    std::vector<uint64_t>().swap(starts);
    std::vector<std::vector<Word>>().swap(levels);
    std::vector<uint32_t>().swap(dirty);
    std::vector<uint8_t>().swap(is_dirty);
  }
};

// Scans of 64 words (`len` <= 64 of them valid): bit k set where block[k] == value or <= value, and
// the least word among those whose bit is set in `bits`. SSE2 for GPT-2's 16-bit words (unsigned
// compares as signed ones after flipping the top bit), plain loops otherwise.
template <class Word>
uint64_t equal_mask(const Word* block, size_t len, Word value) {
#if defined(__SSE2__)
  if constexpr (sizeof(Word) == 2) {
    if (len == kBlock) {
      uint64_t mask = 0;
      const __m128i x = _mm_set1_epi16(static_cast<int16_t>(value));
      for (size_t k = 0; k < kBlock; k += 16) {
        const __m128i a = _mm_cmpeq_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k)), x);
        const __m128i b = _mm_cmpeq_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k + 8)), x);
        mask |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(a, b)))) << k;
      }
      return mask;
    }
  }
#endif
  uint64_t mask = 0;
  for (size_t k = 0; k < len; ++k) mask |= static_cast<uint64_t>(block[k] == value) << k;
  return mask;
}

template <class Word>
uint64_t at_most_mask(const Word* block, size_t len, Word value) {
#if defined(__SSE2__)
  if constexpr (sizeof(Word) == 2) {
    if (len == kBlock) {
      uint64_t above = 0;
      const __m128i flip = _mm_set1_epi16(static_cast<int16_t>(0x8000));
      const __m128i x = _mm_xor_si128(_mm_set1_epi16(static_cast<int16_t>(value)), flip);
      for (size_t k = 0; k < kBlock; k += 16) {
        const __m128i a =
            _mm_cmpgt_epi16(_mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k)), flip), x);
        const __m128i b =
            _mm_cmpgt_epi16(_mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k + 8)), flip), x);
        above |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(a, b)))) << k;
      }
      return ~above;
    }
  }
#endif
  uint64_t mask = 0;
  for (size_t k = 0; k < len; ++k) mask |= static_cast<uint64_t>(block[k] <= value) << k;
  return mask;
}

template <class Word>
Word masked_min(const Word* block, size_t len, uint64_t bits) {
  constexpr Word kNone = std::numeric_limits<Word>::max();
#if defined(__SSE2__)
  if constexpr (sizeof(Word) == 2) {
    if (len == kBlock) {
      const __m128i flip = _mm_set1_epi16(static_cast<int16_t>(0x8000));
      const __m128i lane_bit = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
      __m128i least = _mm_set1_epi16(0x7FFF);  // kNone, flipped
      for (size_t k = 0; k < kBlock; k += 8) {
        const __m128i sel = _mm_set1_epi16(static_cast<int16_t>((bits >> k) & 0xFF));
        const __m128i on = _mm_cmpeq_epi16(_mm_and_si128(sel, lane_bit), lane_bit);
        const __m128i x = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + k)), flip);
        least = _mm_min_epi16(least, _mm_or_si128(_mm_and_si128(on, x), _mm_andnot_si128(on, _mm_set1_epi16(0x7FFF))));
      }
      alignas(16) int16_t lanes[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(lanes), least);
      int16_t m = lanes[0];
      for (int k = 1; k < 8; ++k) m = std::min(m, lanes[k]);
      return static_cast<Word>(static_cast<uint16_t>(m) ^ 0x8000);
    }
  }
#endif
  Word least = kNone;
  for (size_t k = 0; k < len; ++k) least = std::min(least, ((bits >> k) & 1) ? block[k] : kNone);
  return least;
}

}  // namespace

template <class Word>
void Tokenizer::Impl::bpe_long(std::string_view piece, const IdSink& sink) const {
  constexpr Word kNone = std::numeric_limits<Word>::max();
  const size_t n = piece.size();
  const auto* bytes = reinterpret_cast<const unsigned char*>(piece.data());
  thread_local BpeScratch<Word> s;
  const size_t words = (n + kBlock - 1) >> kBlockShift;
  s.v.resize(n);
  s.starts.assign(words, ~uint64_t{0});
  if (n % kBlock != 0) s.starts.back() = (uint64_t{1} << (n % kBlock)) - 1;
  s.is_dirty.assign(words, 0);
  s.dirty.clear();
  Word* v = s.v.data();
  uint64_t* starts = s.starts.data();

  auto is_start = [&](size_t i) { return (starts[i >> kBlockShift] >> (i & (kBlock - 1))) & 1; };
  auto id_at = [&](size_t i) -> int32_t {  // the token of the symbol starting at i
    return i + 1 < n && !is_start(i + 1) ? static_cast<int32_t>(v[i + 1]) : byte_ids[bytes[i]];
  };
  auto next_start = [&](size_t i) -> size_t {  // the first start after i, or n
    size_t w = (i + 1) >> kBlockShift;
    if (w >= words) return n;
    uint64_t bits = starts[w] & (~uint64_t{0} << ((i + 1) & (kBlock - 1)));
    while (bits == 0) {
      if (++w == words) return n;
      bits = starts[w];
    }
    return (w << kBlockShift) + static_cast<size_t>(std::countr_zero(bits));
  };
  auto prev_start = [&](size_t i) -> size_t {  // the last start before i > 0 (0 is always one)
    size_t w = (i - 1) >> kBlockShift;
    uint64_t bits = starts[w] & (~uint64_t{0} >> (kBlock - 1 - ((i - 1) & (kBlock - 1))));
    while (bits == 0) bits = starts[--w];
    return (w << kBlockShift) + kBlock - 1 - static_cast<size_t>(std::countl_zero(bits));
  };
  auto rank_of = [&](int32_t left, int32_t right) -> Word {
    const MergeTable::Entry* m = merges.find(left, right);
    return m == nullptr ? kNone : static_cast<Word>(m->rank);
  };
  auto block_min = [&](size_t b) -> Word {
    const size_t base = b << kBlockShift;
    return masked_min(v + base, std::min(kBlock, n - base), starts[b]);
  };
  auto group_min = [](const std::vector<Word>& level, size_t g) -> Word {
    const size_t lo = g << kBlockShift;
    return masked_min(level.data() + lo, std::min(level.size() - lo, kBlock), ~uint64_t{0});
  };

  for (size_t i = 0; i + 1 < n; ++i) v[i] = rank_of(byte_ids[bytes[i]], byte_ids[bytes[i + 1]]);
  v[n - 1] = kNone;
  s.levels.resize(1);
  s.levels[0].resize(words);
  for (size_t b = 0; b < words; ++b) s.levels[0][b] = block_min(b);
  while (s.levels.back().size() > 1) {
    const std::vector<Word>& below = s.levels.back();
    std::vector<Word> above((below.size() + kBlock - 1) >> kBlockShift);
    for (size_t g = 0; g < above.size(); ++g) above[g] = group_min(below, g);
    s.levels.push_back(std::move(above));
  }
  const size_t depth = s.levels.size();

  // The first block >= b whose least rank (as the tree held it when the round began) is <= r, or
  // `words` when there is none: up the tree until a group holds one, then down to its leftmost.
  auto find_block = [&](size_t b, Word r) -> size_t {
    // The first entry >= idx of idx's group of 64 at `level` that is <= r, or none.
    auto first_in_group = [&](size_t level, size_t idx) -> std::optional<size_t> {
      const std::vector<Word>& lv = s.levels[level];
      const size_t lo = idx & ~(kBlock - 1);
      const uint64_t hits =
          at_most_mask(lv.data() + lo, std::min(lv.size() - lo, kBlock), r) & (~uint64_t{0} << (idx - lo));
      if (hits == 0) return std::nullopt;
      return lo + static_cast<size_t>(std::countr_zero(hits));
    };
    size_t level = 0, idx = b;
    while (true) {
      if (auto hit = first_in_group(level, idx)) {
        idx = *hit;
        break;
      }
      if (++level == depth) return words;
      idx = (idx >> kBlockShift) + 1;  // the group after the one just searched, one level up
      if (idx >= s.levels[level].size()) return words;
    }
    while (level > 0) {
      auto hit = first_in_group(--level, idx << kBlockShift);
      LR_CHECK(hit.has_value(), "gpt2 tokenizer: internal error: the merge tree lost a rank");
      idx = *hit;
    }
    return idx;
  };
  auto touch = [&](size_t i) {
    const size_t b = i >> kBlockShift;
    if (!s.is_dirty[b]) s.is_dirty[b] = 1, s.dirty.push_back(static_cast<uint32_t>(b));
  };

  while (true) {
    const Word round = s.levels.back()[0];
    if (round == kNone) break;
    // Rounds of rare pairs jump through the whole piece: the blocks kAhead further on are fetched
    // while this one is merged (the search only reads the tree, which the round does not change).
    constexpr size_t kAhead = 8;
    size_t queue[kAhead];
    size_t last = 0;  // the block most recently searched for
    bool first = true;
    auto search = [&]() -> size_t {
      if (last >= words) return words;
      last = first ? find_block(0, round) : find_block(last + 1, round);
      first = false;
      if (last < words) {
        __builtin_prefetch(v + (last << kBlockShift));
        __builtin_prefetch(v + (last << kBlockShift) + kBlock - 1);
        __builtin_prefetch(starts + last);
        __builtin_prefetch(bytes + (last << kBlockShift));
        __builtin_prefetch(bytes + (last << kBlockShift) + kBlock - 1);
      }
      return last;
    };
    for (size_t& q : queue) q = search();
    for (size_t turn = 0; queue[turn % kAhead] < words; ++turn) {
      const size_t b = queue[turn % kAhead], base = b << kBlockShift;
      queue[turn % kAhead] = search();
      // The words after a merge's start that it changes are no longer starts, so the positions of
      // rank `round` can be found once per block and then masked by the live start bits.
      const uint64_t of_round = equal_mask(v + base, std::min(kBlock, n - base), round);
      uint64_t done = 0;  // bits of the block already looked at
      while (true) {
        const uint64_t bits = starts[b] & of_round & ~done;
        if (bits == 0) break;
        const size_t k = static_cast<size_t>(std::countr_zero(bits));
        done |= (uint64_t{2} << k) - 1;
        const size_t p = base + k;
        // Merge the symbols at p and r = next_start(p) into one spanning [p, e).
        const size_t r = next_start(p), e = next_start(r);
        const MergeTable::Entry* m = merges.find(id_at(p), id_at(r));
        LR_CHECK(m != nullptr && static_cast<Word>(m->rank) == round,
                 "gpt2 tokenizer: internal error: a pair of rank {} is not there", static_cast<int64_t>(round));
        starts[r >> kBlockShift] &= ~(uint64_t{1} << (r & (kBlock - 1)));
        v[p + 1] = static_cast<Word>(m->merged);
        v[p] = e < n ? rank_of(m->merged, id_at(e)) : kNone;
        touch(p);
        touch(r);
        if (p > 0) {
          const size_t q = prev_start(p);
          v[q] = rank_of(id_at(q), m->merged);
          touch(q);
        }
      }
    }
    for (size_t i = 0; i < s.dirty.size(); ++i) {
      const uint32_t b = s.dirty[i];
      if (i + 4 < s.dirty.size()) {
        __builtin_prefetch(v + (size_t{s.dirty[i + 4]} << kBlockShift));
        __builtin_prefetch(v + (size_t{s.dirty[i + 4]} << kBlockShift) + kBlock - 1);
        __builtin_prefetch(starts + s.dirty[i + 4]);
      }
      s.is_dirty[b] = 0;
      Word value = block_min(b);
      size_t idx = b;
      for (size_t level = 0; level < depth; ++level) {
        if (s.levels[level][idx] == value) break;  // the ancestors already agree
        s.levels[level][idx] = value;
        if (level + 1 == depth) break;
        idx >>= kBlockShift;
        value = group_min(s.levels[level], idx);
      }
    }
    s.dirty.clear();
  }

  int64_t out[256];
  size_t count = 0;
  for (size_t i = 0; i < n; i = next_start(i)) {
    out[count++] = id_at(i);
    if (count == std::size(out)) sink(out, count), count = 0;
  }
  if (count > 0) sink(out, count);
  if (s.v.capacity() > kKeptScratch) s.release();  // a huge piece does not pin its scratch space
}

void Tokenizer::Impl::bpe_into(std::string_view piece, const IdSink& sink) const {
  if (piece.size() == 1) {
    const int64_t id = byte_ids[static_cast<unsigned char>(piece[0])];
    return sink(&id, 1);
  }
  if (narrow_words) return bpe_long<uint16_t>(piece, sink);
  bpe_long<uint32_t>(piece, sink);
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
