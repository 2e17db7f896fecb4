// DataLoader: batches of rows from in-memory tensors, reshuffled every epoch from a seed, with a
// small state (seed, epoch, position) that a checkpoint stores so training resumes on the same batch.
//
// Shuffling is a Fisher-Yates pass driven by Philox 4x32-10 (core/rng.h) keyed by the seed: the
// swap partner of slot i in epoch e comes from counter (e << 32) + i, lanes 0-1 as one 64-bit
// number scaled into [0, i] (bias below n / 2^64). The order of an epoch is thus a pure function
// of (seed, epoch), the same on every machine, and needs no generator state.
#pragma once
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowrank::io {

struct DataLoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  bool drop_last = false;  // drop the short last batch of an epoch
  uint64_t seed = 0;
  Device device = Device::cpu();  // batches are gathered on the CPU, then moved here
};

struct DataLoaderState {
  uint64_t seed = 0;
  int64_t epoch = 0;     // 0-based epoch being served
  int64_t position = 0;  // batches of that epoch already served
  bool operator==(const DataLoaderState&) const = default;
};

// Strings for a checkpoint's safetensors metadata: <prefix>seed, <prefix>epoch, <prefix>position.
std::map<std::string, std::string> to_metadata(const DataLoaderState& s, const std::string& prefix = "loader.");
// Throws naming the key when one is missing or not a non-negative integer.
DataLoaderState dataloader_state_from_metadata(const std::map<std::string, std::string>& metadata,
                                               const std::string& prefix = "loader.");

struct Batch {
  std::vector<Tensor> tensors;  // one per source, [rows, ...] in the source's dtype
  int64_t epoch = 0;
  int64_t index = 0;  // within the epoch
  const Tensor& operator[](size_t i) const { return tensors.at(i); }
  int64_t size() const { return tensors.empty() ? 0 : tensors[0].size(0); }
};

class DataLoader {
 public:
  // Every source has the same leading size N (the samples); they are made contiguous on the CPU
  // once here, and each batch gathers its rows straight into one new tensor per source.
  DataLoader(std::vector<Tensor> sources, DataLoaderOptions options);

  int64_t num_samples() const { return n_; }
  int64_t num_batches() const;  // per epoch
  const DataLoaderOptions& options() const { return options_; }

  // The next batch of the current epoch; std::nullopt at its end, after which the state points at
  // the start of the next epoch. So `while (auto b = loader.next()) {...}` runs one epoch.
  std::optional<Batch> next();
  // Batch `index` of `epoch`, without moving the state.
  Batch batch(int64_t epoch, int64_t index) const;
  // The sample order of an epoch (0..N-1 when not shuffling).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  DataLoaderState state() const { return {options_.seed, epoch_, position_}; }
  void load_state(const DataLoaderState& s);  // also adopts s.seed
  void set_epoch(int64_t epoch);              // the start of `epoch`

  // `for (Batch& b : loader)` serves the rest of the current epoch, like calling next().
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;
    Iterator() = default;
    explicit Iterator(DataLoader* loader) : loader_(loader) { ++*this; }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    Iterator& operator++() {
      current_ = loader_->next();
      return *this;
    }
    bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

   private:
    DataLoader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  Iterator begin() { return Iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  const std::vector<int64_t>& order_for(int64_t epoch) const;
  Batch gather(int64_t epoch, int64_t index, const std::vector<int64_t>& order) const;

  std::vector<Tensor> sources_;
  DataLoaderOptions options_;
  int64_t n_ = 0;
  int64_t epoch_ = 0, position_ = 0;
  // The order of the most recent epoch asked for; recomputed only when the epoch or seed changes.
  mutable std::vector<int64_t> order_;
  mutable int64_t order_epoch_ = -1;
  mutable uint64_t order_seed_ = 0;
};

}  // namespace lowrank::io
