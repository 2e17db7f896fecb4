// GPT-2's BPE merging, the part that must stay linear for a hostile input (one huge piece): the
// flat merge table, a non-owning id sink, and the merge of one piece by rank in rounds over a block
// tree (models/gpt2/bpe_merge.cpp). The tokenizer (tokenizer.cpp) splits text into pieces, caches
// short ones and calls merge_long_piece for the rest.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <vector>

#include "models/gpt2/bpe_files.h"

namespace lowrank::models::gpt2::bpe {

inline uint64_t pair_key(int32_t left, int32_t right) {
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

// Sends the ids of `piece` (two bytes or more) merged as GPT-2's bpe() to `sink`, in order. Word is
// uint16_t when every token id and merge rank fits 16 bits (GPT-2's files), else uint32_t.
template <class Word>
void merge_long_piece(std::string_view piece, const MergeTable& merges, const std::array<int32_t, 256>& byte_ids,
                      const IdSink& sink);

extern template void merge_long_piece<uint16_t>(std::string_view, const MergeTable&, const std::array<int32_t, 256>&,
                                                const IdSink&);
extern template void merge_long_piece<uint32_t>(std::string_view, const MergeTable&, const std::array<int32_t, 256>&,
                                                const IdSink&);

}  // namespace lowrank::models::gpt2::bpe
