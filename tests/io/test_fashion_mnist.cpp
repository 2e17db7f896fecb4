// Fashion-MNIST loader: the real files tools/setup installs (skipped when absent), and small
// synthetic folders for the error paths.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>

#include "core/io/fashion_mnist.h"
#include "core/io/idx.h"
#include "support/errors.h"
#include "support/files.h"

namespace lowrank {
namespace {

using test::TempDir;
using test::write_bytes;

Tensor pixels(int64_t n, int64_t h = 28, int64_t w = 28) {
  std::vector<uint8_t> v(static_cast<size_t>(n * h * w));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i % 256);
  return Tensor::from_data<uint8_t>(std::span<const uint8_t>(v), {n, h, w});
}

Tensor labels(std::vector<uint8_t> v) {
  return Tensor::from_data<uint8_t>(std::span<const uint8_t>(v), {static_cast<int64_t>(v.size())});
}

void write_split(const TempDir& dir, const std::string& prefix, const Tensor& images, const Tensor& labs,
                 bool gz = false) {
  std::string suffix = gz ? ".gz" : "";
  auto put = [&](const std::string& name, const std::string& bytes) {
    if (!gz) return write_bytes(dir.file(name), bytes);
    gzFile f = gzopen(dir.file(name + suffix).c_str(), "wb");
    ASSERT_NE(f, nullptr);
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  };
  put(prefix + "-images-idx3-ubyte", io::encode_idx(images));
  put(prefix + "-labels-idx1-ubyte", io::encode_idx(labs));
}

TEST(FashionMnist, RealDataHasTheDocumentedShapesAndRanges) {
  if (!std::filesystem::exists(io::kFashionMnistDefaultDir))
    GTEST_SKIP() << io::kFashionMnistDefaultDir << " is absent; tools/setup installs it";
  io::FashionMnist d = io::load_fashion_mnist();
  EXPECT_EQ(d.train_images.shape(), (Shape{60000, 784}));
  EXPECT_EQ(d.test_images.shape(), (Shape{10000, 784}));
  EXPECT_EQ(d.train_images.dtype(), DType::F32);
  EXPECT_EQ(d.train_labels.shape(), (Shape{60000}));
  EXPECT_EQ(d.test_labels.dtype(), DType::I64);
  // Pixels are u8 / 255: in [0, 1], with both ends present and every value a multiple of 1/255.
  std::vector<float> px = d.test_images.to_vector<float>();
  float lo = 1, hi = 0;
  for (float v : px) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
  for (size_t i = 0; i < px.size(); i += 997) {
    float k = std::round(px[i] * 255.0f);
    EXPECT_EQ(px[i], k / 255.0f);
  }
  // The data set is balanced: 6000 training and 1000 test images per class.
  for (const auto& [labs, per_class] : {std::pair{d.train_labels, 6000}, std::pair{d.test_labels, 1000}}) {
    std::vector<int> count(10, 0);
    for (int64_t l : labs.to_vector<int64_t>()) {
      ASSERT_GE(l, 0);
      ASSERT_LT(l, 10);
      ++count[static_cast<size_t>(l)];
    }
    for (int c : count) EXPECT_EQ(c, per_class);
  }
}

TEST(FashionMnist, LoadsASyntheticFolderGzOrRaw) {
  for (bool gz : {false, true}) {
    TempDir dir;
    write_split(dir, "train", pixels(5), labels({0, 1, 9, 3, 3}), gz);
    write_split(dir, "t10k", pixels(2), labels({7, 2}), gz);
    io::FashionMnist d = io::load_fashion_mnist(dir.path().string());
    EXPECT_EQ(d.train_images.shape(), (Shape{5, 784}));
    EXPECT_EQ(d.train_labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 9, 3, 3}));
    EXPECT_EQ(d.test_labels.to_vector<int64_t>(), (std::vector<int64_t>{7, 2}));
    std::vector<float> px = d.train_images.to_vector<float>();
    std::vector<uint8_t> raw = pixels(5).to_vector<uint8_t>();
    for (size_t i = 0; i < px.size(); ++i) ASSERT_EQ(px[i], static_cast<float>(raw[i]) / 255.0f);
  }
}

TEST(FashionMnist, MissingFolderOrFileSaysHowToGetTheData) {
  TempDir dir;
  std::string missing = dir.file("nowhere");
  EXPECT_LR_ERROR(io::load_fashion_mnist(missing), missing, "does not exist", "tools/setup", "dataset-fashion-mnist");
  write_split(dir, "train", pixels(1), labels({0}));
  EXPECT_LR_ERROR(io::load_fashion_mnist(dir.path().string()), "t10k-images-idx3-ubyte.gz", "is missing",
                  "tools/setup");
}

TEST(FashionMnist, InconsistentFilesAreRejected) {
  {
    TempDir dir;
    write_split(dir, "train", pixels(3), labels({0, 1}));
    write_split(dir, "t10k", pixels(1), labels({0}));
    EXPECT_LR_ERROR(io::load_fashion_mnist(dir.path().string()), "has 3 images", "has 2 labels");
  }
  {
    TempDir dir;
    write_split(dir, "train", pixels(2), labels({0, 10}));
    write_split(dir, "t10k", pixels(1), labels({0}));
    EXPECT_LR_ERROR(io::load_fashion_mnist(dir.path().string()), "label 10 of sample 1");
  }
  {
    TempDir dir;
    write_split(dir, "train", pixels(2, 32, 32), labels({0, 1}));
    write_split(dir, "t10k", pixels(1), labels({0}));
    EXPECT_LR_ERROR(io::load_fashion_mnist(dir.path().string()), "[2, 32, 32]", "expected u8 [N, 28, 28]");
  }
}

}  // namespace
}  // namespace lowrank
