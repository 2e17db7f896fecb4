// Losses and metrics for classifiers: sparse cross-entropy from logits, accuracy, running means,
// and a whole-dataset evaluation.
#pragma once
#include <cstdint>
#include <functional>

#include "core/tensor.h"
#include "nn/module.h"

namespace lowrank::nn {

// Mean over rows of -log softmax(logits)[label]: Keras' SparseCategoricalCrossentropy(from_logits
// = True) and PyTorch's CrossEntropyLoss. logits [N, C] (or [..., C]); labels of any integer
// dtype, [N] (or [...]), converted to int64; rows labelled ignore_index do not count.
class CrossEntropyLoss {
 public:
  explicit CrossEntropyLoss(int64_t ignore_index = -100) : ignore_index_(ignore_index) {}
  Tensor operator()(const Tensor& logits, const Tensor& labels) const;

 private:
  int64_t ignore_index_;
};

// Labels as int64 (checks that they are integers with the logits' leading shape).
Tensor labels_as_int64(const Tensor& logits, const Tensor& labels, const char* op);

// Rows whose argmax over the last axis equals the label.
int64_t count_correct(const Tensor& logits, const Tensor& labels);
double accuracy(const Tensor& logits, const Tensor& labels);

// Keras-style streaming metrics.
class Accuracy {
 public:
  void update(const Tensor& logits, const Tensor& labels);
  double result() const { return count_ ? static_cast<double>(correct_) / static_cast<double>(count_) : 0.0; }
  int64_t correct() const { return correct_; }
  int64_t count() const { return count_; }
  void reset() { correct_ = count_ = 0; }

 private:
  int64_t correct_ = 0, count_ = 0;
};

// Weighted running mean (a batch loss weighted by its batch size gives the per-sample mean).
class MeanMetric {
 public:
  void update(double value, double weight = 1.0) { sum_ += value * weight, weight_ += weight; }
  double result() const { return weight_ > 0 ? sum_ / weight_ : 0.0; }
  void reset() { sum_ = weight_ = 0.0; }

 private:
  double sum_ = 0.0, weight_ = 0.0;
};

struct EvalResult {
  double loss = 0.0;      // mean cross-entropy per sample
  double accuracy = 0.0;  // fraction of samples classified correctly
  int64_t count = 0;
};

// Runs `model` in eval mode without autograd over inputs[i : i + batch_size] and reports the
// mean loss and accuracy; `prepare` (if given) maps each input batch to the model's input
// (e.g. u8 pixels to f32 in [0, 1] on the model's device). The model's mode is restored after.
EvalResult evaluate_classifier(Module& model, const Tensor& inputs, const Tensor& labels, int64_t batch_size,
                               const std::function<Tensor(const Tensor&)>& prepare = {});

}  // namespace lowrank::nn
