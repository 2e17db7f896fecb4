// Cross-entropy loss, accuracy and running means, and classifier evaluation.
#include "nn/loss.h"

#include <algorithm>

#include "core/autograd.h"
#include "core/ops.h"

namespace lowrank::nn {

Tensor labels_as_int64(const Tensor& logits, const Tensor& labels, const char* op) {
  LR_CHECK(logits.defined() && labels.defined(), "{}: undefined input", op);
  LR_CHECK(!is_floating(labels.dtype()), "{}: labels must be integers, got {} {}", op, dtype_name(labels.dtype()),
           labels.shape());
  LR_CHECK(logits.dim() >= 1, "{}: logits need a class axis, got {}", op, logits.shape());
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  LR_CHECK(labels.shape() == lead, "{}: labels {} do not match logits {} (expected {})", op, labels.shape(),
           logits.shape(), lead);
  Tensor l = labels.dtype() == DType::I64 ? labels : labels.to(DType::I64);
  return l.device() == logits.device() ? l : l.to(logits.device());
}

Tensor CrossEntropyLoss::operator()(const Tensor& logits, const Tensor& labels) const {
  return cross_entropy(logits, labels_as_int64(logits, labels, "CrossEntropyLoss"), ignore_index_);
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor l = labels_as_int64(logits, labels, "accuracy");
  NoGradGuard no_grad;
  Tensor pred = argmax(logits.detach(), -1);
  std::vector<int64_t> p = pred.to_vector<int64_t>(), t = l.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < p.size(); ++i) correct += p[i] == t[i];
  return correct;
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  int64_t n = labels.numel();
  return n ? static_cast<double>(count_correct(logits, labels)) / static_cast<double>(n) : 0.0;
}

void Accuracy::update(const Tensor& logits, const Tensor& labels) {
  correct_ += count_correct(logits, labels);
  count_ += labels.numel();
}

EvalResult evaluate_classifier(Module& model, const Tensor& inputs, const Tensor& labels, int64_t batch_size,
                               const std::function<Tensor(const Tensor&)>& prepare) {
  LR_CHECK(batch_size > 0, "evaluate: batch size must be positive, got {}", batch_size);
  LR_CHECK(inputs.defined() && labels.defined() && inputs.dim() >= 1 && labels.dim() >= 1 &&
               inputs.size(0) == labels.size(0),
           "evaluate: inputs {} and labels {} must have the same number of samples",
           inputs.defined() ? inputs.shape() : Shape{}, labels.defined() ? labels.shape() : Shape{});
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  CrossEntropyLoss loss_fn;
  MeanMetric loss;
  Accuracy acc;
  const int64_t n = inputs.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    int64_t b = std::min(batch_size, n - i);
    Tensor x = inputs.narrow(0, i, b), y = labels.narrow(0, i, b);
    if (prepare) x = prepare(x);
    Tensor logits = model(x);
    loss.update(loss_fn(logits, y).item(), static_cast<double>(b));
    acc.update(logits, y);
  }
  model.train(was_training);
  return {loss.result(), acc.result(), n};
}

}  // namespace lowrank::nn
