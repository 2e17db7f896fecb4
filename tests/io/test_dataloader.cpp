// DataLoader: each epoch is a permutation, batches gather the right rows, orders are a function
// of (seed, epoch), and a saved state resumes on exactly the next batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/io/dataloader.h"
#include "core/threads.h"
#include "support/errors.h"
#include "support/files.h"

namespace lowrank {
namespace {

using io::Batch;
using io::DataLoader;
using io::DataLoaderOptions;
using io::DataLoaderState;

// x row i is [i, i + 0.5, i + 0.25] (f32), y[i] = i * 10 (i64): rows can be traced back to samples.
struct Data {
  Tensor x, y;
  explicit Data(int64_t n) {
    std::vector<float> xv;
    std::vector<int64_t> yv;
    for (int64_t i = 0; i < n; ++i) {
      xv.insert(xv.end(), {static_cast<float>(i), i + 0.5f, i + 0.25f});
      yv.push_back(i * 10);
    }
    x = Tensor::from_vector(xv, {n, 3});
    y = Tensor::from_vector(yv, {n});
  }
};

DataLoaderOptions opts(int64_t batch, bool shuffle, bool drop_last, uint64_t seed) {
  DataLoaderOptions o;
  o.batch_size = batch;
  o.shuffle = shuffle;
  o.drop_last = drop_last;
  o.seed = seed;
  return o;
}

// The sample ids of a batch, checking that x and y rows belong to the same samples.
std::vector<int64_t> ids_of(const Batch& b) {
  std::vector<float> x = b[0].to_vector<float>();
  std::vector<int64_t> y = b[1].to_vector<int64_t>(), ids;
  for (size_t r = 0; r < y.size(); ++r) {
    int64_t id = y[r] / 10;
    EXPECT_EQ(x[3 * r], static_cast<float>(id));
    EXPECT_EQ(x[3 * r + 1], id + 0.5f);
    EXPECT_EQ(x[3 * r + 2], id + 0.25f);
    ids.push_back(id);
  }
  return ids;
}

std::vector<int64_t> run_epoch(DataLoader& dl, std::vector<int64_t>* sizes = nullptr) {
  std::vector<int64_t> all;
  while (auto b = dl.next()) {
    if (sizes) sizes->push_back(b->size());
    for (int64_t id : ids_of(*b)) all.push_back(id);
  }
  return all;
}

TEST(DataLoader, EachEpochServesEverySampleOnceWithMatchingRows) {
  Data d(103);
  DataLoader dl({d.x, d.y}, opts(10, true, false, 7));
  EXPECT_EQ(dl.num_batches(), 11);
  std::vector<int64_t> sizes;
  std::vector<int64_t> ids = run_epoch(dl, &sizes);
  EXPECT_EQ(sizes, (std::vector<int64_t>{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3}));
  std::vector<int64_t> sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> expect(103);
  std::iota(expect.begin(), expect.end(), 0);
  EXPECT_EQ(sorted, expect);
  EXPECT_NE(ids, expect);  // shuffled (probability of identity is 1/103!)
  EXPECT_EQ(dl.state().epoch, 1);
  EXPECT_EQ(dl.state().position, 0);
}

TEST(DataLoader, DropLastDropsTheShortBatch) {
  Data d(103);
  DataLoader dl({d.x, d.y}, opts(10, true, true, 7));
  EXPECT_EQ(dl.num_batches(), 10);
  std::vector<int64_t> sizes;
  std::vector<int64_t> ids = run_epoch(dl, &sizes);
  EXPECT_EQ(sizes, std::vector<int64_t>(10, 10));
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), 100u);
  // An exact multiple loses nothing either way.
  Data e(40);
  EXPECT_EQ(DataLoader({e.x}, opts(10, false, true, 0)).num_batches(), 4);
  EXPECT_EQ(DataLoader({e.x}, opts(10, false, false, 0)).num_batches(), 4);
  EXPECT_EQ(DataLoader({e.x}, opts(64, false, true, 0)).num_batches(), 0);
}

TEST(DataLoader, WithoutShuffleTheOrderIsTheDataOrder) {
  Data d(25);
  DataLoader dl({d.x, d.y}, opts(8, false, false, 123));
  std::vector<int64_t> expect(25);
  std::iota(expect.begin(), expect.end(), 0);
  EXPECT_EQ(run_epoch(dl), expect);
  EXPECT_EQ(run_epoch(dl), expect);
}

TEST(DataLoader, OrderIsAFunctionOfSeedAndEpoch) {
  Data d(500);
  DataLoader a({d.x, d.y}, opts(32, true, false, 42)), b({d.x, d.y}, opts(32, true, false, 42)),
      c({d.x, d.y}, opts(32, true, false, 43));
  std::vector<int64_t> a0 = run_epoch(a), a1 = run_epoch(a);
  EXPECT_EQ(a0, run_epoch(b));  // same seed, same epoch: same order
  EXPECT_NE(a0, a1);            // a new epoch reshuffles
  EXPECT_EQ(a1, run_epoch(b));
  EXPECT_NE(a0, run_epoch(c));  // another seed, another order
  EXPECT_EQ(a.epoch_order(0), a0);
  EXPECT_EQ(a.epoch_order(1), a1);
  // Random access gives the same batch as sequential serving.
  Batch b5 = a.batch(1, 5);
  EXPECT_EQ(ids_of(b5), std::vector<int64_t>(a1.begin() + 160, a1.begin() + 192));
  EXPECT_EQ(b5.epoch, 1);
  EXPECT_EQ(b5.index, 5);
}

// A crude uniformity check of the shuffle: over many epochs, each sample lands in the first slot
// about equally often (a biased Fisher-Yates, e.g. one drawing from [0, n) at every step, fails).
TEST(DataLoader, ShuffleIsRoughlyUniform) {
  Data d(5);
  DataLoader dl({d.y}, opts(5, true, false, 9));
  std::vector<int> first(5, 0), last(5, 0);
  const int epochs = 5000;
  for (int e = 0; e < epochs; ++e) {
    std::vector<int64_t> o = dl.epoch_order(e);
    ++first[static_cast<size_t>(o.front())];
    ++last[static_cast<size_t>(o.back())];
  }
  // Expected 1000 each, standard deviation ~28; 150 is over 5 sigma.
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(first[k], epochs / 5, 150) << k;
    EXPECT_NEAR(last[k], epochs / 5, 150) << k;
  }
}

TEST(DataLoader, SavedStateResumesOnTheNextBatch) {
  Data d(77);
  DataLoader full({d.x, d.y}, opts(8, true, false, 5));
  std::vector<std::vector<int64_t>> expected;
  for (int e = 0; e < 3; ++e)
    while (auto b = full.next()) expected.push_back(ids_of(*b));

  // Stop in the middle of epoch 1, save through metadata strings, resume in a fresh loader.
  DataLoader first({d.x, d.y}, opts(8, true, false, 5));
  std::vector<std::vector<int64_t>> got;
  for (int i = 0; i < 10 + 4; ++i) {
    auto b = first.next();
    if (!b) b = first.next();  // the end of epoch 0
    got.push_back(ids_of(*b));
  }
  DataLoaderState saved = first.state();
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.position, 4);
  std::map<std::string, std::string> md = io::to_metadata(saved);
  DataLoader resumed({d.x, d.y}, opts(8, true, false, 999));  // the seed comes from the state
  resumed.load_state(io::dataloader_state_from_metadata(md));
  EXPECT_EQ(resumed.state(), saved);
  while (got.size() < expected.size()) {
    auto b = resumed.next();
    if (!b) continue;
    got.push_back(ids_of(*b));
  }
  EXPECT_EQ(got, expected);
}

TEST(DataLoader, RangeForServesTheRestOfTheEpoch) {
  Data d(20);
  DataLoader dl({d.x, d.y}, opts(6, true, false, 1));
  std::vector<int64_t> ids;
  int batches = 0;
  for (Batch& b : dl) {
    ++batches;
    for (int64_t id : ids_of(b)) ids.push_back(id);
  }
  EXPECT_EQ(batches, 4);
  EXPECT_EQ(ids, dl.epoch_order(0));
  EXPECT_EQ(dl.state().epoch, 1);
}

TEST(DataLoader, NonContiguousSourcesAreGatheredCorrectly) {
  // Columns of a transposed matrix as samples.
  std::vector<float> v(12);
  std::iota(v.begin(), v.end(), 0.0f);
  Tensor m = Tensor::from_vector(v, {3, 4}).mT();  // [4, 3], sample i = column i of m
  DataLoader dl({m}, opts(4, false, false, 0));
  Batch b = *dl.next();
  EXPECT_EQ(b[0].to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
}

// Batches from 32 KB are gathered by the pool's threads together (each copies a contiguous share
// of the rows): the same rows as one thread, a short last batch included.
TEST(DataLoader, LargeBatchesGatheredByTwoThreadsHoldTheRightRows) {
  const int64_t n = 77, width = 1024, batch = 24;  // 24 rows of 4 KB: 96 KB a batch
  std::vector<float> v(static_cast<size_t>(n * width));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < width; ++j) v[static_cast<size_t>(i * width + j)] = static_cast<float>(i * 10000 + j);
  Tensor x = Tensor::from_vector(v, {n, width});
  for (int threads : {2, 1}) {
    set_num_threads(threads);
    DataLoader dl({x}, opts(batch, true, false, 3));
    const std::vector<int64_t> order = dl.epoch_order(0);
    int64_t seen = 0;
    while (auto b = dl.next()) {
      std::vector<float> got = (*b)[0].to_vector<float>();
      ASSERT_EQ(static_cast<int64_t>(got.size()), b->size() * width);
      for (int64_t r = 0; r < b->size(); ++r)
        for (int64_t j = 0; j < width; j += 97)
          ASSERT_EQ(got[static_cast<size_t>(r * width + j)],
                    static_cast<float>(order[static_cast<size_t>(seen + r)] * 10000 + j))
              << "threads " << threads << ", row " << seen + r;
      seen += b->size();
    }
    EXPECT_EQ(seen, n);
  }
  set_num_threads(0);
}

TEST(DataLoader, BadInputIsAClearError) {
  Data d(10), e(11);
  EXPECT_LR_ERROR(DataLoader({}, opts(2, true, false, 0)), "no source tensors");
  EXPECT_LR_ERROR(DataLoader({d.x}, opts(0, true, false, 0)), "batch_size must be positive");
  EXPECT_LR_ERROR(DataLoader({d.x, e.y}, opts(2, true, false, 0)), "source 1 has 11 samples", "source 0 has 10");
  EXPECT_LR_ERROR(DataLoader({Tensor::scalar(1.0)}, opts(2, true, false, 0)), "leading sample axis");
  DataLoader dl({d.x}, opts(3, true, false, 0));
  EXPECT_LR_ERROR(dl.load_state({0, 0, 5}), "position 5 is past the 4 batches");
  EXPECT_LR_ERROR(dl.load_state({0, -1, 0}), "epoch -1");
  EXPECT_LR_ERROR(dl.batch(0, 4), "batch 4 is out of range");
  EXPECT_LR_ERROR(io::dataloader_state_from_metadata({{"loader.seed", "1"}, {"loader.epoch", "2"}}),
                  "no 'loader.position'");
  EXPECT_LR_ERROR(
      io::dataloader_state_from_metadata({{"loader.seed", "1"}, {"loader.epoch", "-2"}, {"loader.position", "0"}}),
      "'loader.epoch' = '-2'");
  EXPECT_LR_ERROR(
      io::dataloader_state_from_metadata({{"loader.seed", "x1"}, {"loader.epoch", "2"}, {"loader.position", "0"}}),
      "'loader.seed' = 'x1'");
}

}  // namespace
}  // namespace lowrank
