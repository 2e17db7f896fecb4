// GPT-2's BPE merge of one piece by rank, in rounds over a block tree (see bpe_merge.h).
#include "models/gpt2/bpe_merge.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/error.h"

namespace lowrank::models::gpt2::bpe {
namespace {

// Per-thread BPE scratch space is kept between pieces up to this many symbols.
constexpr size_t kKeptScratch = 4096;

}  // namespace

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
void merge_long_piece(std::string_view piece, const MergeTable& merges, const std::array<int32_t, 256>& byte_ids,
                      const IdSink& sink) {
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

template void merge_long_piece<uint16_t>(std::string_view, const MergeTable&, const std::array<int32_t, 256>&,
                                         const IdSink&);
template void merge_long_piece<uint32_t>(std::string_view, const MergeTable&, const std::array<int32_t, 256>&,
                                         const IdSink&);

}  // namespace lowrank::models::gpt2::bpe
