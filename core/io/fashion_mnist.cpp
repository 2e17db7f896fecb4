// Fashion-MNIST loader: IDX u8 images -> f32 [N, 784] in [0, 1], u8 labels -> i64 [N].
#include "core/io/fashion_mnist.h"

#include <filesystem>

#include "core/io/idx.h"

namespace lowrank::io {

const std::array<const char*, 10> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

namespace {

constexpr const char* kSetupHint = "run tools/setup, which installs the Debian package dataset-fashion-mnist";

// `<dir>/<stem>.gz`, or the uncompressed `<dir>/<stem>` when only that exists.
std::string find_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path gz = fs::path(dir) / (stem + ".gz"), raw = fs::path(dir) / stem;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(raw, ec)) return raw.string();
  LR_FAIL("fashion-mnist: {} is missing (nor is there {}); {}, or pass the folder that holds the files", gz.string(),
          raw.string(), kSetupHint);
}

}  // namespace

void load_fashion_mnist_split(const std::string& images_path, const std::string& labels_path, Tensor& images,
                              Tensor& labels) {
  Tensor img = read_idx(images_path);
  Tensor lab = read_idx(labels_path);
  LR_CHECK(img.dtype() == DType::U8 && img.dim() == 3 && img.size(1) == 28 && img.size(2) == 28,
           "fashion-mnist: {} holds {} {}, expected u8 [N, 28, 28] images", images_path, dtype_name(img.dtype()),
           img.shape());
  LR_CHECK(lab.dtype() == DType::U8 && lab.dim() == 1, "fashion-mnist: {} holds {} {}, expected u8 [N] labels",
           labels_path, dtype_name(lab.dtype()), lab.shape());
  int64_t n = img.size(0);
  LR_CHECK(n > 0, "fashion-mnist: {} holds no images (a split with nothing in it)", images_path);
  LR_CHECK(lab.size(0) == n, "fashion-mnist: {} has {} images but {} has {} labels", images_path, n, labels_path,
           lab.size(0));

  images = Tensor::empty({n, kFashionMnistPixels}, DType::F32);
  const uint8_t* src = img.data<uint8_t>();
  float* dst = images.data<float>();
  int64_t total = n * kFashionMnistPixels;
  for (int64_t i = 0; i < total; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;

  labels = Tensor::empty({n}, DType::I64);
  const uint8_t* ls = lab.data<uint8_t>();
  int64_t* ld = labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    LR_CHECK(ls[i] < kFashionMnistClasses, "fashion-mnist: {}: label {} of sample {} is not a class 0..9", labels_path,
             int{ls[i]}, i);
    ld[i] = ls[i];
  }
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  std::error_code ec;
  LR_CHECK(std::filesystem::is_directory(dir, ec), "fashion-mnist: the data folder {} does not exist; {}", dir,
           kSetupHint);
  // Every file is looked for before any is read, so a missing one is reported at once.
  std::string train_images = find_file(dir, "train-images-idx3-ubyte");
  std::string train_labels = find_file(dir, "train-labels-idx1-ubyte");
  std::string test_images = find_file(dir, "t10k-images-idx3-ubyte");
  std::string test_labels = find_file(dir, "t10k-labels-idx1-ubyte");
  FashionMnist d;
  load_fashion_mnist_split(train_images, train_labels, d.train_images, d.train_labels);
  load_fashion_mnist_split(test_images, test_labels, d.test_images, d.test_labels);
  return d;
}

}  // namespace lowrank::io
