// DataLoader: per-epoch Philox Fisher-Yates orders and row gathers into one tensor per batch.
#include "core/io/dataloader.h"

#include <charconv>
#include <cstring>
#include <numeric>

#include "core/autograd.h"
#include "core/rng.h"
#include "core/threads.h"

namespace lowrank::io {
namespace {

// Epochs and slot indices share one 64-bit Philox counter, 32 bits each.
constexpr int64_t kMaxIndex = int64_t{1} << 32;
// A batch of at least this many bytes is gathered by the pool's threads together.
constexpr size_t kParallelGatherBytes = size_t{32} << 10;

uint64_t parse_u64(const std::map<std::string, std::string>& md, const std::string& key) {
  auto it = md.find(key);
  LR_CHECK(it != md.end(), "dataloader state: metadata has no '{}'", key);
  const std::string& s = it->second;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  LR_CHECK(ec == std::errc() && end == s.data() + s.size() && !s.empty(),
           "dataloader state: '{}' = '{}' is not a non-negative integer", key, s);
  return v;
}

}  // namespace

std::map<std::string, std::string> to_metadata(const DataLoaderState& s, const std::string& prefix) {
  return {{prefix + "seed", std::to_string(s.seed)},
          {prefix + "epoch", std::to_string(s.epoch)},
          {prefix + "position", std::to_string(s.position)}};
}

DataLoaderState dataloader_state_from_metadata(const std::map<std::string, std::string>& metadata,
                                               const std::string& prefix) {
  DataLoaderState s;
  s.seed = parse_u64(metadata, prefix + "seed");
  uint64_t epoch = parse_u64(metadata, prefix + "epoch"), position = parse_u64(metadata, prefix + "position");
  LR_CHECK(epoch < static_cast<uint64_t>(kMaxIndex) && position < static_cast<uint64_t>(kMaxIndex),
           "dataloader state: epoch {} or position {} is out of range", epoch, position);
  s.epoch = static_cast<int64_t>(epoch);
  s.position = static_cast<int64_t>(position);
  return s;
}

DataLoader::DataLoader(std::vector<Tensor> sources, DataLoaderOptions options) : options_(options) {
  LR_CHECK(!sources.empty(), "DataLoader: no source tensors");
  LR_CHECK(options_.batch_size > 0, "DataLoader: batch_size must be positive, got {}", options_.batch_size);
  NoGradGuard no_grad;
  for (size_t i = 0; i < sources.size(); ++i) {
    const Tensor& t = sources[i];
    LR_CHECK(t.defined() && t.dim() >= 1, "DataLoader: source {} must have a leading sample axis, got shape {}", i,
             t.defined() ? t.shape() : Shape{});
    LR_CHECK(t.size(0) == sources[0].size(0),
             "DataLoader: source {} has {} samples (shape {}) but source 0 has {} "
             "(shape {})",
             i, t.size(0), t.shape(), sources[0].size(0), sources[0].shape());
    sources_.push_back(t.detach().to(Device::cpu()).contiguous());
  }
  n_ = sources_[0].size(0);
  LR_CHECK(n_ < kMaxIndex, "DataLoader: {} samples exceed the 2^32 the shuffle supports", n_);
  // An epoch without a batch would report zeros and checkpoint as if it had trained.
  LR_CHECK(n_ > 0, "DataLoader: the data set holds no samples");
}

int64_t DataLoader::num_batches() const {
  int64_t b = options_.batch_size;
  return n_ / b + (!options_.drop_last && n_ % b != 0);  // (n + b - 1) / b would overflow for a huge b
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  LR_CHECK(epoch >= 0 && epoch < kMaxIndex, "DataLoader: epoch {} is out of range", epoch);
  std::vector<int64_t> order(static_cast<size_t>(n_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!options_.shuffle) return order;
  for (int64_t i = n_ - 1; i > 0; --i) {
    Philox4 r = philox4x32_10((static_cast<uint64_t>(epoch) << 32) + static_cast<uint64_t>(i), options_.seed);
    uint64_t bits = (uint64_t{r.v[0]} << 32) | r.v[1];
    auto j = static_cast<int64_t>((static_cast<unsigned __int128>(bits) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

const std::vector<int64_t>& DataLoader::order_for(int64_t epoch) const {
  if (order_epoch_ != epoch || order_seed_ != options_.seed) {
    order_ = epoch_order(epoch);
    order_epoch_ = epoch;
    order_seed_ = options_.seed;
  }
  return order_;
}

Batch DataLoader::gather(int64_t epoch, int64_t index, const std::vector<int64_t>& order) const {
  int64_t start = index * options_.batch_size;
  int64_t rows = std::min(options_.batch_size, n_ - start);
  Batch b;
  b.epoch = epoch;
  b.index = index;
  for (const Tensor& src : sources_) {
    Shape shape = src.shape();
    shape[0] = rows;
    Tensor out = Tensor::empty(shape, src.dtype());
    size_t row_bytes = n_ ? src.nbytes() / static_cast<size_t>(n_) : 0;
    const char* from = static_cast<const char*>(src.raw_data());
    char* to = static_cast<char*>(out.raw_data());
    auto copy_rows = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        std::memcpy(to + static_cast<size_t>(r) * row_bytes,
                    from + static_cast<size_t>(order[static_cast<size_t>(start + r)]) * row_bytes, row_bytes);
    };
    // Random rows wait on memory, one after another: from kParallelGatherBytes the threads each
    // wait for their share.
    parallel_ranges(rows, static_cast<size_t>(rows) * row_bytes >= kParallelGatherBytes && rows > 1, copy_rows);
    b.tensors.push_back(options_.device.is_cpu() ? out : out.to(options_.device));
  }
  return b;
}

Batch DataLoader::batch(int64_t epoch, int64_t index) const {
  LR_CHECK(index >= 0 && index < num_batches(), "DataLoader: batch {} is out of range (an epoch has {})", index,
           num_batches());
  return gather(epoch, index, order_for(epoch));
}

std::optional<Batch> DataLoader::next() {
  if (position_ >= num_batches()) {
    set_epoch(epoch_ + 1);
    return std::nullopt;
  }
  return gather(epoch_, position_++, order_for(epoch_));
}

void DataLoader::load_state(const DataLoaderState& s) {
  LR_CHECK(s.epoch >= 0 && s.epoch < kMaxIndex, "DataLoader: state epoch {} is out of range", s.epoch);
  LR_CHECK(s.position >= 0 && s.position <= num_batches(),
           "DataLoader: state position {} is past the {} batches "
           "of an epoch (was the state saved with another batch size or data set?)",
           s.position, num_batches());
  options_.seed = s.seed;
  epoch_ = s.epoch;
  position_ = s.position;
}

void DataLoader::set_epoch(int64_t epoch) {
  LR_CHECK(epoch >= 0 && epoch < kMaxIndex, "DataLoader: epoch {} is out of range", epoch);
  epoch_ = epoch;
  position_ = 0;
}

}  // namespace lowrank::io
