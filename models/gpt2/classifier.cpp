// GPT-2 sequence classification: last-real-token pooling over the final hidden states and the
// bias-free score head.
#include "models/gpt2/classifier.h"

#include <algorithm>

#include "core/ops.h"
#include "nn/layers.h"

namespace lowrank::models::gpt2 {

namespace {
constexpr double kHeadInitStd = 0.02;  // HF's initializer_range, which GPT2ForSequenceClassification uses
}  // namespace

Gpt2Classifier::Gpt2Classifier(std::shared_ptr<Gpt2> transformer, int64_t num_labels, nn::Generator& gen)
    : transformer_(std::move(transformer)), num_labels_(num_labels) {
  LR_CHECK(transformer_ != nullptr, "Gpt2Classifier: no transformer");
  LR_CHECK(num_labels >= 2, "Gpt2Classifier: needs at least 2 labels, got {}", num_labels);
  register_module("transformer", transformer_);
  const Tensor& wte = dynamic_cast<nn::Embedding&>(transformer_->child("wte")).embeddings();
  nn::DenseOptions score{
      .use_bias = false, .kernel_init = nn::Init::normal(kHeadInitStd), .dtype = wte.dtype(), .device = wte.device()};
  register_module("score", std::make_shared<nn::Dense>(transformer_->config().n_embd, num_labels, score, gen));
}

const Tensor& Gpt2Classifier::score_weight() const {
  return dynamic_cast<nn::Dense&>(child("score")).kernel();
}

Tensor Gpt2Classifier::features(const Tensor& ids, const Tensor& lengths) {
  LR_CHECK(lengths.defined() && lengths.dtype() == DType::I64 && lengths.dim() == 1 && ids.defined() &&
               ids.dim() == 2 && lengths.size(0) == ids.size(0),
           "Gpt2Classifier: lengths must be int64 [batch] for ids {}, got {}", ids.defined() ? ids.shape() : Shape{},
           lengths.defined() ? lengths.shape() : Shape{});
  const int64_t B = ids.size(0), T = ids.size(1);
  const std::vector<int64_t> len = lengths.to_vector<int64_t>();
  std::vector<int64_t> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = len[static_cast<size_t>(b)];
    LR_CHECK(n >= 1 && n <= T, "Gpt2Classifier: length {} of row {} is outside [1, {}]", n, b, T);
    rows[static_cast<size_t>(b)] = b * T + n - 1;
  }
  Tensor h = transformer_->hidden_states(ids);  // [B, T, C]
  const int64_t C = h.size(2);
  // The gather of row b·T + length_b - 1 is an embedding lookup into the flattened states; its
  // backward scatters the gradient into exactly those rows.
  Tensor idx = Tensor::from_vector(rows, {B}).to(h.device());
  return embedding(h.reshape({B * T, C}), idx);
}

Tensor Gpt2Classifier::head(const Tensor& features) {
  return child("score")(features);
}

Tensor Gpt2Classifier::forward(const Tensor& ids, const Tensor& lengths) {
  return head(features(ids, lengths));
}

Tensor Gpt2Classifier::loss(const Tensor& ids, const Tensor& lengths, const Tensor& labels) {
  Tensor logits = forward(ids, lengths);
  return cross_entropy(logits, labels.device() == logits.device() ? labels : labels.to(logits.device()));
}

std::map<std::string, Tensor> Gpt2Classifier::head_state() const {
  return {{"score.weight", score_weight()}};
}

void Gpt2Classifier::load_head(const std::map<std::string, Tensor>& state, const std::string& source) {
  auto it = state.find("score.weight");
  LR_CHECK(it != state.end(), "{} has no score.weight (the classification head)", source);
  Tensor w = score_weight();  // a handle sharing the kernel's storage
  LR_CHECK(it->second.shape() == w.shape(), "{}: score.weight is {} but this classifier's head is {}", source,
           it->second.shape(), w.shape());
  NoGradGuard no_grad;
  w.copy_(it->second.to(w.device()).to(w.dtype()));
}

std::string Gpt2Classifier::describe() const {
  return detail::format("Gpt2Classifier({}, labels={})", transformer_->describe(), num_labels_);
}

PaddedBatch pad_right(const std::vector<const std::vector<int64_t>*>& sequences, int64_t pad_id, int64_t max_len) {
  LR_CHECK(!sequences.empty(), "pad_right: no sequences");
  int64_t T = 0;
  for (const auto* s : sequences) {
    LR_CHECK(s != nullptr && !s->empty(), "pad_right: an empty sequence cannot be classified");
    T = std::max<int64_t>(T, static_cast<int64_t>(s->size()));
  }
  if (max_len > 0) T = std::min(T, max_len);
  const int64_t B = static_cast<int64_t>(sequences.size());
  std::vector<int64_t> ids(static_cast<size_t>(B * T), pad_id), lengths(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int64_t>& s = *sequences[static_cast<size_t>(b)];
    const int64_t n = std::min<int64_t>(T, static_cast<int64_t>(s.size()));
    std::copy(s.begin(), s.begin() + n, ids.begin() + b * T);
    lengths[static_cast<size_t>(b)] = n;
  }
  return {Tensor::from_vector(ids, {B, T}), Tensor::from_vector(lengths, {B})};
}

}  // namespace lowrank::models::gpt2
