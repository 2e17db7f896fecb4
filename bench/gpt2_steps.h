// What the GPT-2 benchmarks share: random token ids, and one fine-tuning step (LoRA on query +
// value, r = 8, alpha 16, the base frozen; or every weight) with its AdamW, as gpt2_lora_bench
// times it pairwise and gpt2_lora_step times it against PyTorch (bench/gpt2_lora_torch_compare.sh).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "models/gpt2/adapter.h"
#include "models/gpt2/model.h"
#include "optim/adam.h"
#include "optim/clip.h"

namespace lowrank::bench {

// [b, t] ids in [0, vocab) from rand(seed): speed does not depend on their values.
inline Tensor random_ids(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  NoGradGuard ng;
  std::vector<float> u = rand({b, t}, seed).to_vector<float>();
  std::vector<int64_t> ids(u.size());
  for (size_t i = 0; i < u.size(); ++i) ids[i] = static_cast<int64_t>(u[i] * static_cast<float>(vocab)) % vocab;
  return Tensor::from_vector(ids, {b, t});
}

// A model of `preset` and its optimizer for one kind of fine-tuning step: LoRA (query + value,
// r = 8, alpha 16, the base frozen, AdamW on the adapters only) or full (AdamW on every weight).
// AdamW lr 1e-4, betas 0.9/0.95, eps 1e-8, no weight decay; the gradient norm clipped at 1.0.
// Dropout 0 (the configs' 0.1 would add masks that both kinds pay alike).
struct FineTuneStep {
  std::unique_ptr<models::gpt2::Gpt2> model;
  std::unique_ptr<optim::AdamW> opt;

  FineTuneStep(const std::string& preset, bool lora) {
    models::gpt2::Config cfg = models::gpt2::Config::preset(preset);
    cfg.dropout = 0.0;
    nn::Generator gen(0);
    model = std::make_unique<models::gpt2::Gpt2>(cfg, gen);
    if (lora) {
      models::gpt2::Gpt2LoraSpec spec;  // query + value
      spec.lora.r = 8;
      spec.lora.alpha = 16;
      models::gpt2::inject_gpt2_lora(*model, spec);
    }
    optim::NamedParameters params;
    for (auto& [name, p] : model->named_parameters())
      if (p.requires_grad()) params.emplace_back(name, p);
    opt = std::make_unique<optim::AdamW>(params, optim::AdamOptions{.lr = 1e-4, .beta2 = 0.95, .weight_decay = 0.0});
  }
  // One step on (x, y); the loss.
  double step(const Tensor& x, const Tensor& y) {
    Tensor loss = model->loss(x, y);
    opt->zero_grad();
    loss.backward();
    optim::clip_grad_norm(opt->parameters(), 1.0);
    opt->step();
    return loss.item();
  }
  int64_t optimizer_bytes() const {
    int64_t n = 0;
    for (auto& [name, t] : opt->state_dict()) n += static_cast<int64_t>(t.nbytes());
    return n;
  }
};

}  // namespace lowrank::bench
