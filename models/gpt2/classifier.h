// GPT-2 with a sequence-classification head, as Hugging Face's GPT2ForSequenceClassification: a
// bias-free Dense `score` (C -> labels) read at each sequence's last real token.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/gpt2/model.h"
#include "nn/generator.h"
#include "nn/module.h"

namespace lowrank::models::gpt2 {

// Children "transformer" (the Gpt2; its paths as model.h lists them, e.g.
// "transformer.h.0.attn.query") and "score" (Dense C -> num_labels, no bias, kernel [labels, C]:
// the layout of HF's score.weight). Sequences are right-padded: attention is causal, so the
// hidden state at index length - 1 never saw the padding and equals running the sequence alone.
class Gpt2Classifier : public nn::Module {
 public:
  // The head starts as HF's does: normal(0, 0.02) from `init_gen`.
  Gpt2Classifier(std::shared_ptr<Gpt2> transformer, int64_t num_labels,
                 nn::Generator& init_gen = nn::default_generator());

  // ids int64 [B, T] (right-padded with any valid id), lengths int64 [B] in [1, T] (real tokens per
  // row) -> logits [B, num_labels].
  Tensor forward(const Tensor& ids, const Tensor& lengths);
  // The pooled features the head reads: ln_f(h) at each row's last real token, [B, C].
  Tensor features(const Tensor& ids, const Tensor& lengths);
  // The head alone: features [B, C] -> logits [B, num_labels].
  Tensor head(const Tensor& features);
  // Mean cross-entropy of forward(ids, lengths) against labels int64 [B].
  Tensor loss(const Tensor& ids, const Tensor& lengths, const Tensor& labels);

  Gpt2& transformer() const { return *transformer_; }
  std::shared_ptr<Gpt2> transformer_ptr() const { return transformer_; }
  int64_t num_labels() const { return num_labels_; }
  const Tensor& score_weight() const;  // [num_labels, C]
  // The head as Hugging Face names it: {"score.weight": [num_labels, C]} (PEFT saves it under
  // modules_to_save with this name); load_head takes such a map back, refusing a missing tensor or
  // another shape naming both.
  std::map<std::string, Tensor> head_state() const;
  void load_head(const std::map<std::string, Tensor>& state, const std::string& source);

  std::string type_name() const override { return "Gpt2Classifier"; }
  std::string describe() const override;

 private:
  std::shared_ptr<Gpt2> transformer_;
  int64_t num_labels_;
};

// Right-pads token sequences into ids [B, T] (T = the longest, at most `max_len` when > 0: longer
// ones are cut) and their lengths [B]; `pad_id` fills the rest. Empty sequences are refused.
struct PaddedBatch {
  Tensor ids, lengths;
};
PaddedBatch pad_right(const std::vector<const std::vector<int64_t>*>& sequences, int64_t pad_id, int64_t max_len = 0);

}  // namespace lowrank::models::gpt2
