// Fashion-MNIST (Xiao et al. 2017) from the IDX files of the Debian package dataset-fashion-mnist,
// which tools/setup installs into /usr/share/datasets/fashion-mnist.
#pragma once
#include <array>
#include <string>

#include "core/tensor.h"

namespace lowrank::io {

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
inline constexpr int64_t kFashionMnistPixels = 28 * 28;
inline constexpr int64_t kFashionMnistClasses = 10;
// Label i names class i.
extern const std::array<const char*, 10> kFashionMnistClassNames;

struct FashionMnist {
  Tensor train_images;  // f32 [60000, 784], row-major 28x28 pixels scaled to [0, 1] (value / 255)
  Tensor train_labels;  // i64 [60000], 0..9
  Tensor test_images;   // f32 [10000, 784]
  Tensor test_labels;   // i64 [10000]
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir` (the .gz name first). A missing
// folder or file is an error naming the path and saying that tools/setup installs the data; files
// whose shapes disagree (not 28x28, image and label counts differ, labels past 9) are errors too.
FashionMnist load_fashion_mnist(const std::string& dir = kFashionMnistDefaultDir);

// One split: images f32 [N, 784] in [0, 1] and labels i64 [N], from two IDX files.
void load_fashion_mnist_split(const std::string& images_path, const std::string& labels_path, Tensor& images,
                              Tensor& labels);

}  // namespace lowrank::io
