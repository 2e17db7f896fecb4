// GPT-2's byte-level BPE: the PCRE2 pre-tokenisation split, merges by rank over a heap, and a
// bounded, sharded cache of piece -> ids so that a corpus costs one BPE per distinct word.
#include "models/gpt2/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

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

  explicit Impl(BpeFiles files);
  ~Impl() { pcre2_code_free(regex); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Calls emit(begin, end) for each piece of the valid UTF-8 `text`, in order; the pieces tile it.
  template <class Emit>
  void split_valid(std::string_view text, Emit&& emit) const;
  template <class Emit>
  void split(std::string_view text, Emit&& emit) const;
  void bpe_into(std::string_view piece, std::vector<int64_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int64_t>& out) const;
};

Tokenizer::Impl::Impl(BpeFiles files)
    : tokens(std::move(files.tokens)), merges(files.merges), id_of(std::move(files.ids)), eot(files.eot_id) {
  for (size_t b = 0; b < 256; ++b) byte_ids[b] = files.byte_ids[b];

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
void Tokenizer::Impl::split_valid(std::string_view text, Emit&& emit) const {
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
    emit(pos, end);
    pos = end;
  }
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

  // Some bytes are not UTF-8: match on a copy where each of them is U+FFFD (a symbol character,
  // as the reference sees a lossily decoded byte), and map the pieces back to the original bytes.
  std::string clean;
  clean.reserve(text.size() + 16);
  std::vector<size_t> origin;  // clean offset -> offset in text of the character there
  origin.reserve(text.size() + 16);
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8_sequence_length(text, i);
    if (len == 0) {
      clean += "\xEF\xBF\xBD";
      origin.insert(origin.end(), 3, i);
      ++i;
    } else {
      clean.append(text.substr(i, len));
      origin.insert(origin.end(), len, i);
      i += len;
    }
  }
  origin.push_back(text.size());
  split_valid(clean, [&](size_t b, size_t e) { emit(origin[b], origin[e]); });
}

// Merges by rank as GPT-2's bpe(): repeatedly take the lowest-ranked adjacent pair and merge all of
// its occurrences left to right. A min-heap of (rank, position) candidates does it in O(n log n);
// pairs that a round of merges creates wait until that round is over, so even a merge list whose
// ranks are not in creation order gives the reference's result. Scratch space is per thread.
//
// Memory is what a huge piece (one 50 MB word) costs, so the state is two int32 per byte and one
// 8-byte candidate per pair: a symbol is a span [i, end) of the piece; id[i] is its token and
// link[i] its end; the span's last byte (when it is not i) has id -1 and link = i, which finds a
// symbol's left neighbour without a prev array. A candidate keeps only (rank, left) and is checked
// against the pair at `left` when it comes off the heap (a rank names one pair, so equal ranks
// mean the same pair).
void Tokenizer::Impl::bpe_into(std::string_view piece, std::vector<int64_t>& out) const {
  const size_t n = piece.size();
  if (n == 1) {
    out.push_back(byte_ids[static_cast<unsigned char>(piece[0])]);
    return;
  }
  LR_CHECK(n < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           "gpt2 tokenizer: a piece of {} bytes without a break (one word, number or run of spaces) is too long "
           "to merge",
           n);
  struct Candidate {
    int32_t rank, left;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  thread_local std::vector<int32_t> id, link;
  thread_local std::vector<Candidate> heap, pending;
  id.resize(n);
  link.resize(n);
  heap.clear();
  pending.clear();
  const int32_t end = static_cast<int32_t>(n);
  for (size_t i = 0; i < n; ++i) {
    id[i] = byte_ids[static_cast<unsigned char>(piece[i])];
    link[i] = static_cast<int32_t>(i + 1);
  }
  auto prev_of = [&](int32_t i) -> int32_t {
    if (i == 0) return -1;
    const int32_t j = i - 1;  // the last byte of the left neighbour
    return id[static_cast<size_t>(j)] >= 0 ? j : link[static_cast<size_t>(j)];
  };
  // The merge of the pair starting at `left`, or nullptr when there is none.
  auto pair_at = [&](int32_t left) -> const MergeTable::Entry* {
    const int32_t right = link[static_cast<size_t>(left)];
    if (right >= end) return nullptr;
    return merges.find(id[static_cast<size_t>(left)], id[static_cast<size_t>(right)]);
  };
  auto consider = [&](int32_t left, std::vector<Candidate>& into) {
    if (left < 0) return;
    if (const MergeTable::Entry* m = pair_at(left)) into.push_back({m->rank, left});
  };
  for (int32_t i = 0; i + 1 < end; ++i) consider(i, heap);
  const std::greater<> later;  // makes the std heap functions keep the smallest (rank, position) on top
  std::make_heap(heap.begin(), heap.end(), later);
  int32_t round = -1;
  while (true) {
    if (heap.empty() || (heap.front().rank != round && !pending.empty())) {
      if (pending.empty()) break;
      for (const Candidate& c : pending) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), later);
      }
      pending.clear();
      continue;
    }
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    const size_t l = static_cast<size_t>(c.left);
    if (id[l] < 0) continue;  // stale: no longer the start of a symbol
    const MergeTable::Entry* m = pair_at(c.left);
    if (m == nullptr || m->rank != c.rank) continue;  // stale: the pair here changed
    round = c.rank;
    const int32_t r = link[l], e = link[static_cast<size_t>(r)];
    id[l] = m->merged;
    link[l] = e;
    id[static_cast<size_t>(r)] = -1;
    id[static_cast<size_t>(e - 1)] = -1;  // the merged symbol's last byte points back at its start
    link[static_cast<size_t>(e - 1)] = c.left;
    consider(prev_of(c.left), pending);
    consider(c.left, pending);
  }
  for (int32_t i = 0; i < end; i = link[static_cast<size_t>(i)]) out.push_back(id[static_cast<size_t>(i)]);
  if (id.capacity() > kKeptScratch) {  // a huge piece does not pin its scratch space in the thread
    std::vector<int32_t>().swap(id);
    std::vector<int32_t>().swap(link);
    std::vector<Candidate>().swap(heap);
    std::vector<Candidate>().swap(pending);
  }
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  if (piece.size() == 1 || piece.size() > kMaxCachedPiece) return bpe_into(piece, out);
  const size_t hash = BytesHash{}(piece);
  if (cache.find(piece, hash, out)) return;
  const size_t start = out.size();
  bpe_into(piece, out);
  cache.insert(piece, hash, out.data() + start, out.size() - start);
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int64_t>& out) const {
  split(text, [&](size_t b, size_t e) { encode_piece(text.substr(b, e - b), out); });
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
  out.reserve(text.size() / 3 + 4);
  if (!allow_special) {
    impl_->encode_plain(text, out);
    return out;
  }
  static constexpr std::string_view kEot = "<|endoftext|>";
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(kEot, pos);
    impl_->encode_plain(text.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos), out);
    if (hit == std::string_view::npos) break;
    out.push_back(impl_->eot);
    pos = hit + kEot.size();
  }
  return out;
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
  if (!piece.empty()) impl_->bpe_into(piece, out);
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
