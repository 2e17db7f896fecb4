// GPT-2 (Radford et al. 2019) built from nn/ layers so LoRA can target any projection: token and
// position embeddings, pre-LayerNorm blocks with EinsumDense q/k/v/out projections around the
// fused attention op, a Dense-GELU-Dense MLP, a final LayerNorm and an LM head tied to wte.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/gpt2/config.h"
#include "nn/einsum_dense.h"
#include "nn/generator.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace lowrank::models::gpt2 {

// Module paths and parameter shapes (C = n_embd, H = n_head, D = C / H, V = vocab_size):
//   wte.embeddings [V, C]          token embedding, also the LM head (logits = h · wteᵀ)
//   wpe.embeddings [n_ctx, C]      position embedding
//   h.{i}.ln_1.gamma, .beta [C]
//   h.{i}.attn.query.kernel [C, H, D], .bias [H, D]    EinsumDense "abc,cde->abde"
//   h.{i}.attn.key.*, h.{i}.attn.value.*               same shapes
//   h.{i}.attn.out.kernel [H, D, C], .bias [C]         EinsumDense "abcd,cde->abe"
//   h.{i}.ln_2.gamma, .beta [C]
//   h.{i}.mlp.fc.kernel [4C, C], .bias [4C]            Dense, GELU (tanh)
//   h.{i}.mlp.proj.kernel [C, 4C], .bias [C]           Dense
//   ln_f.gamma, .beta [C]
// LoRA targets are the layer paths, e.g. nn::inject_lora(model, "h.0.attn.query", cfg) or
// "h.3.mlp.fc"; every layer is looked up through child() at forward time, so an injected adapter
// takes part from the next forward on.
inline std::string layer_path(int64_t block, const std::string& layer) {
  return "h." + std::to_string(block) + "." + layer;  // layer: "attn.query", "mlp.fc", ...
}

class Gpt2;

// Keys and values of every layer for incremental decoding: [batch, max_len, H, D] per layer,
// filled up to length(). Made by Gpt2::make_cache; forward(ids, cache) appends to it.
class KvCache {
 public:
  int64_t length() const { return length_; }     // positions already cached
  int64_t capacity() const { return max_len_; }  // most positions it can hold
  int64_t batch() const { return batch_; }
  void reset() { length_ = 0; }  // keeps the buffers; the next forward starts at position 0
  const std::vector<Tensor>& keys() const { return k_; }
  const std::vector<Tensor>& values() const { return v_; }

 private:
  friend class Gpt2;
  int64_t batch_ = 0, max_len_ = 0, length_ = 0;
  std::vector<Tensor> k_, v_;
};

// Causal self-attention: children "query", "key", "value" (EinsumDense "abc,cde->abde", output
// [B, T, H, D], the layout the attention op takes) and "out" (EinsumDense "abcd,cde->abe").
class CausalSelfAttention : public nn::Module {
 public:
  CausalSelfAttention(const Config& config, nn::Generator& init_gen, nn::Generator* dropout_gen);
  // x [B, T, C] -> [B, T, C], positions 0..T-1.
  Tensor forward(const Tensor& x) override;
  // x [B, T, C] at positions past..past+T-1: stores this step's k/v into k_cache/v_cache
  // ([B, max_len, H, D]) at [past, past + T) and attends to all past + T keys.
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache, int64_t past);
  std::string type_name() const override { return "CausalSelfAttention"; }

 private:
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v);
  Config config_;
  nn::Generator* dropout_gen_;
};

// Children "fc" (Dense C -> 4C, GELU tanh) and "proj" (Dense 4C -> C).
class Mlp : public nn::Module {
 public:
  Mlp(const Config& config, nn::Generator& init_gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Mlp"; }
};

// x + drop(attn(ln_1(x))), then x + drop(mlp(ln_2(x))). Children "ln_1", "attn", "ln_2", "mlp".
class Block : public nn::Module {
 public:
  Block(const Config& config, nn::Generator& init_gen, nn::Generator* dropout_gen);
  Tensor forward(const Tensor& x) override;
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache, int64_t past);
  std::string type_name() const override { return "Block"; }

 private:
  Tensor residual_dropout(const Tensor& x);
  double dropout_;
  nn::Generator* dropout_gen_;
};

class Gpt2 : public nn::Module {
 public:
  // Weights as GPT-2 initialises them, drawn from `init_gen`: normal(0, 0.02) for embeddings and
  // kernels, normal(0, 0.02 / sqrt(2 · n_layer)) for the residual projections (attn.out,
  // mlp.proj), zero biases, unit LayerNorm scales. Dropout masks come from the model's own
  // Generator (seeded with `dropout_seed`, see dropout_generator()), so a training run is a pure
  // function of the two seeds. Like every Module it starts in training mode: call eval() before
  // evaluating or generating with a config whose dropout is not 0 (HF's configs say 0.1).
  explicit Gpt2(const Config& config, nn::Generator& init_gen = nn::default_generator(), uint64_t dropout_seed = 0);

  // ids int64 [B, T] with T <= n_ctx and every id in [0, vocab_size) -> logits [B, T, V] on the
  // model's device (ids on another device are copied over).
  Tensor forward(const Tensor& ids) override;
  // Incremental decoding (inference: runs without autograd). ids [B, T] are the tokens at
  // positions cache.length() .. cache.length() + T - 1; returns their logits [B, T, V] and
  // appends their keys and values to `cache`. The batch must be the cache's, and the cache must
  // have room for T more positions.
  Tensor forward(const Tensor& ids, KvCache& cache);
  // A cache for `batch` sequences of up to `max_len` (<= n_ctx) positions, on the model's device.
  KvCache make_cache(int64_t batch, int64_t max_len) const;
  // Mean cross-entropy of forward(ids) against targets int64 [B, T]; targets equal to -100 are
  // ignored (the mean is over the others).
  Tensor loss(const Tensor& ids, const Tensor& targets);
  // The final hidden states ln_f(h) [B, T, C] that the LM head reads (and a classification head,
  // models/gpt2/classifier.h); ids as forward's.
  Tensor hidden_states(const Tensor& ids);

  // loss() computes the head and the cross-entropy over chunks of rows holding at most this many
  // logits (default 2^24, 64 MB in f32), so that no [B·T, V] tensor outgrows the CPU allocator's
  // cached blocks; the result equals the unchunked mean up to summation order.
  void set_loss_chunk_elems(int64_t elems);
  int64_t loss_chunk_elems() const { return loss_chunk_elems_; }

  const Config& config() const { return config_; }
  std::string type_name() const override { return "Gpt2"; }
  std::string describe() const override;
  // The dropout masks' Philox stream; save (seed, offset) and restore it to replay a run.
  nn::Generator& dropout_generator() { return dropout_gen_; }
  Device device() const;

 private:
  Tensor embed(const Tensor& ids, int64_t past);
  Tensor head(const Tensor& h);
  void check_ids(const Tensor& ids, int64_t past) const;

  Config config_;
  nn::Generator dropout_gen_;
  int64_t loss_chunk_elems_ = int64_t{1} << 24;
};

}  // namespace lowrank::models::gpt2
