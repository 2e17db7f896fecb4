// GPT-2 sequence classification: last-real-token pooling equals running each sequence alone, the
// head's HF name and layout, and the labelled-data loader (split stability, bad input).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "core/autograd.h"
#include "core/ops.h"
#include "gpt2_test_util.h"
#include "models/gpt2/classifier.h"
#include "models/gpt2/label_data.h"
#include "models/gpt2/text_data.h"

namespace lowrank {
namespace {

namespace fs = std::filesystem;
namespace gt = gpt2_test;
using models::gpt2::Gpt2;
using models::gpt2::Gpt2Classifier;

// Float32 through the same layers in another batch shape: summation order differs a little.
constexpr gt::Tol kSameMathTol{1e-5, 1e-6};

template <class F>
::testing::AssertionResult throws_naming(F f, const std::vector<std::string>& words) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& w : words)
      if (msg.find(w) == std::string::npos) return ::testing::AssertionFailure() << "'" << msg << "' lacks " << w;
    if (msg.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "not one line: " << msg;
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

std::shared_ptr<Gpt2Classifier> tiny_classifier(int64_t labels, uint64_t seed) {
  nn::Generator gen(seed);
  auto base = std::make_shared<Gpt2>(gt::tiny_config(), gen);
  return std::make_shared<Gpt2Classifier>(base, labels, gen);
}

TEST(Gpt2Classifier, PaddedLastTokenPoolingEqualsEachSequenceAlone) {
  auto clf = tiny_classifier(3, 1);
  clf->eval();
  const std::vector<std::vector<int64_t>> seqs = {{5, 7, 9}, {1, 2, 3, 4, 5, 6, 7, 8}, {42}, {3, 3, 3, 3, 3}};
  std::vector<const std::vector<int64_t>*> ptrs;
  for (const auto& s : seqs) ptrs.push_back(&s);
  // Padding with an id the sequences also use, and with another: neither may matter.
  for (int64_t pad : {int64_t{0}, int64_t{49}}) {
    const models::gpt2::PaddedBatch b = models::gpt2::pad_right(ptrs, pad);
    ASSERT_EQ(b.ids.shape(), (Shape{4, 8}));
    EXPECT_EQ(b.lengths.to_vector<int64_t>(), (std::vector<int64_t>{3, 8, 1, 5}));
    const Tensor batched = clf->forward(b.ids, b.lengths);
    ASSERT_EQ(batched.shape(), (Shape{4, 3}));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int64_t n = static_cast<int64_t>(seqs[i].size());
      const Tensor alone =
          clf->forward(Tensor::from_vector(seqs[i], {1, n}), Tensor::from_vector(std::vector<int64_t>{n}, {1}));
      EXPECT_TRUE(gt::close(batched.slice(0, static_cast<int64_t>(i), static_cast<int64_t>(i) + 1), alone, kSameMathTol,
                            "row " + std::to_string(i)));
      // And the HF definition itself: the head on every position, then the last real one.
      const Tensor all = clf->head(clf->transformer().hidden_states(Tensor::from_vector(seqs[i], {1, n})));
      EXPECT_TRUE(gt::close(alone, all.slice(1, n - 1, n).reshape({1, 3}), kSameMathTol, "all positions"));
    }
  }
}

TEST(Gpt2Classifier, GradientReachesOnlyRealTokensAndHead) {
  auto clf = tiny_classifier(2, 2);
  const std::vector<int64_t> a = {4, 5, 6}, b = {7, 8, 9, 10, 11};
  const models::gpt2::PaddedBatch pb = models::gpt2::pad_right({&a, &b}, 0);
  Tensor loss = clf->loss(pb.ids, pb.lengths, Tensor::from_vector(std::vector<int64_t>{0, 1}, {2}));
  loss.backward();
  EXPECT_TRUE(clf->score_weight().grad().defined());
  // wpe rows past the longest real token (position 5+) take no gradient: padding never counts.
  const Tensor g = clf->transformer().parameter("wpe.embeddings").grad();
  ASSERT_TRUE(g.defined());
  const std::vector<float> gv = g.to_vector<float>();
  const int64_t C = gt::tiny_config().n_embd;
  double beyond = 0, within = 0;
  for (int64_t p = 0; p < gt::tiny_config().n_ctx; ++p)
    for (int64_t c = 0; c < C; ++c) (p >= 5 ? beyond : within) += std::abs(gv[static_cast<size_t>(p * C + c)]);
  EXPECT_EQ(beyond, 0.0);
  EXPECT_GT(within, 0.0);
}

TEST(Gpt2Classifier, HeadHasHfNameAndRefusesOtherShapes) {
  auto clf = tiny_classifier(4, 3);
  auto state = clf->head_state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state.at("score.weight").shape(), (Shape{4, 16}));
  EXPECT_TRUE(clf->parameter("score.kernel").defined());
  auto other = tiny_classifier(4, 4);
  other->load_head(state, "head.safetensors");
  EXPECT_TRUE(gt::bitwise_equal(other->score_weight(), clf->score_weight()));
  EXPECT_TRUE(throws_naming([&] { tiny_classifier(5, 5)->load_head(state, "head.safetensors"); },
                            {"head.safetensors", "score.weight", "[4, 16]", "[5, 16]"}));
  EXPECT_TRUE(throws_naming([&] { other->load_head({}, "x.safetensors"); }, {"x.safetensors", "score.weight"}));
  EXPECT_TRUE(throws_naming(
      [&] {
        clf->forward(Tensor::from_vector(std::vector<int64_t>{1, 2}, {1, 2}),
                     Tensor::from_vector(std::vector<int64_t>{3}, {1}));
      },
      {"length 3", "[1, 2]"}));
  EXPECT_TRUE(throws_naming([&] { models::gpt2::pad_right({}, 0); }, {"no sequences"}));
  const std::vector<int64_t> empty;
  EXPECT_TRUE(throws_naming([&] { models::gpt2::pad_right({&empty}, 0); }, {"empty sequence"}));
}

TEST(Gpt2Classifier, PadRightTruncatesToMaxLen) {
  const std::vector<int64_t> a = {1, 2, 3, 4, 5, 6}, b = {7};
  const models::gpt2::PaddedBatch p = models::gpt2::pad_right({&a, &b}, 9, 4);
  EXPECT_EQ(p.ids.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 4, 7, 9, 9, 9}));
  EXPECT_EQ(p.lengths.to_vector<int64_t>(), (std::vector<int64_t>{4, 1}));
}

// ---- labelled data

models::gpt2::LabelDataOptions from_dir(const std::string& dir, std::vector<std::string> classes = {}) {
  models::gpt2::LabelDataOptions o;
  o.dir = dir, o.classes = std::move(classes);
  return o;
}
models::gpt2::LabelDataOptions from_file(const std::string& file, std::vector<std::string> classes = {}) {
  models::gpt2::LabelDataOptions o;
  o.file = file, o.classes = std::move(classes);
  return o;
}

class LabelDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lowrank_label_data_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  static std::string fortunes(const std::string& word, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += word + " number " + std::to_string(i) + "\n%\n";
    return s;
  }
  fs::path dir_;
};

TEST_F(LabelDataTest, SplitIsAFixedFunctionOfTheText) {
  // Pinned values: FNV-1a 64 of the bytes mod 10, the same on every platform and run.
  EXPECT_EQ(models::gpt2::fnv1a64("hello"), 0xa430d84680aabd0bull);  // % 10 == 1
  EXPECT_EQ(models::gpt2::split_of("hello"), models::gpt2::Split::Val);
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 2000; ++i) ++counts[static_cast<int>(models::gpt2::split_of("doc " + std::to_string(i)))];
  EXPECT_NEAR(counts[0], 1600, 80);  // train ~80%
  EXPECT_NEAR(counts[1], 200, 45);   // val ~10%
  EXPECT_NEAR(counts[2], 200, 45);   // test ~10%
}

TEST_F(LabelDataTest, FolderOfClassesSplitsStablyAndIndependentlyOfOtherClasses) {
  write("alpha", fortunes("alpha", 50));
  write("beta", fortunes("beta", 40));
  write("beta.dat", "index");
  write("gamma", fortunes("gamma", 30));
  EXPECT_EQ(models::gpt2::available_classes(dir_.string()), (std::vector<std::string>{"alpha", "beta", "gamma"}));
  const auto all = models::gpt2::load_label_data(from_dir(dir_.string()));
  EXPECT_EQ(all.classes, (std::vector<std::string>{"alpha", "beta", "gamma"}));
  EXPECT_EQ(all.documents_per_class, (std::vector<int64_t>{50, 40, 30}));
  EXPECT_EQ(all.train.size() + all.val.size() + all.test.size(), 120u);
  EXPECT_GT(all.val.size(), 0u);
  EXPECT_GT(all.test.size(), 0u);
  // Choosing fewer classes (in another order) relabels but moves no document to another split.
  const auto two = models::gpt2::load_label_data(from_dir(dir_.string(), {"gamma", "alpha"}));
  EXPECT_EQ(two.classes, (std::vector<std::string>{"gamma", "alpha"}));
  for (const auto& d : two.test) {
    const bool found = std::any_of(all.test.begin(), all.test.end(), [&](const auto& x) { return x.text == d.text; });
    EXPECT_TRUE(found) << d.text;
  }
  EXPECT_EQ(two.test.size() + two.val.size() + two.train.size(), 80u);
  // A second read gives the same split, in the same order.
  const auto again = models::gpt2::load_label_data(from_dir(dir_.string()));
  ASSERT_EQ(again.test.size(), all.test.size());
  for (size_t i = 0; i < all.test.size(); ++i) EXPECT_EQ(again.test[i].text, all.test[i].text);
}

TEST_F(LabelDataTest, TabSeparatedFile) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += (i % 2 ? "pos\tgood movie " : "neg\tbad film ") + std::to_string(i) + "\n";
  text += "\n";
  const std::string f = write("data.tsv", text);
  const auto d = models::gpt2::load_label_data(from_file(f));
  EXPECT_EQ(d.classes, (std::vector<std::string>{"neg", "pos"}));
  EXPECT_EQ(d.train.size() + d.val.size() + d.test.size(), 40u);
  for (const auto& x : d.train) EXPECT_EQ(x.text.rfind(x.label == 0 ? "bad" : "good", 0), 0u) << x.text;
}

TEST_F(LabelDataTest, BadInputIsOneLineNamingTheProblem) {
  const std::string empty = (dir_ / "empty").string();
  fs::create_directories(empty);
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_dir(empty)); }, {"empty", empty}));
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_dir((dir_ / "nope").string())); },
                            {"not a folder", "nope"}));
  write("alpha", fortunes("alpha", 20));
  write("blank", "\n%\n   \n%\n");
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_dir(dir_.string())); },
                            {"class 'blank' has no documents"}));
  EXPECT_TRUE(throws_naming(
      [&] {
        models::gpt2::load_label_data(from_dir(dir_.string(), {"alpha", "zeta"}));
      },
      {"no class 'zeta'", "alpha", "blank"}));
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_dir(dir_.string(), {"alpha"})); },
                            {"1 class", "at least 2"}));
  const std::string notab = write("bad.tsv", "pos\tfine\nno tab here\n");
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_file(notab)); }, {"line 2", "no tab"}));
  const std::string blank = write("blank.tsv", "\n\n");
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_file(blank)); }, {"no labelled lines"}));
  const std::string unknown = write("u.tsv", "a\tx\nb\ty\n");
  EXPECT_TRUE(throws_naming([&] { models::gpt2::load_label_data(from_file(unknown, {"c", "a"})); }, {"no class 'c'"}));
}

}  // namespace
}  // namespace lowrank
