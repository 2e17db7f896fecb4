// GPT-2 forward passes (full and KV-cached) over nn/ layers and the fused attention op.
#include "models/gpt2/model.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/functional.h"

namespace lowrank::models::gpt2 {
namespace {

constexpr double kInitStd = 0.02;  // GPT-2's initializer_range

// Inverted dropout drawing its mask from `gen` (offsets advance per call), or x itself when off.
Tensor maybe_dropout(const Tensor& x, double p, bool training, nn::Generator& gen) {
  if (!training || p <= 0.0) return x;
  return dropout(x, p, true, gen.seed(), gen.take(x.numel()));
}

}  // namespace

// ---- attention

CausalSelfAttention::CausalSelfAttention(const Config& c, nn::Generator& gen, nn::Generator* dropout_gen)
    : config_(c), dropout_gen_(dropout_gen) {
  const int64_t C = c.n_embd, H = c.n_head, D = c.head_dim();
  nn::EinsumDenseOptions qkv{.bias_axes = "de", .kernel_init = nn::Init::normal(kInitStd)};
  for (const char* name : {"query", "key", "value"})
    register_module(name,
                    std::make_shared<nn::EinsumDense>("abc,cde->abde", Shape{-1, H, D}, Shape{-1, -1, C}, qkv, gen));
  nn::EinsumDenseOptions out{
      .bias_axes = "e", .kernel_init = nn::Init::normal(kInitStd / std::sqrt(2.0 * static_cast<double>(c.n_layer)))};
  register_module("out",
                  std::make_shared<nn::EinsumDense>("abcd,cde->abe", Shape{-1, C}, Shape{-1, -1, H, D}, out, gen));
}

Tensor CausalSelfAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v) {
  double p = 0.0;
  uint64_t seed = 0, offset = 0;
  if (is_training() && config_.dropout > 0.0) {
    p = config_.dropout;
    seed = dropout_gen_->seed();
    offset = dropout_gen_->take(q.size(0) * q.size(2) * q.size(1) * k.size(1));  // a [B, H, Tq, Tk] mask
  }
  return attention(q, k, v, /*causal=*/true, /*scale=*/0.0, p, seed, offset);
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  Tensor q = child("query")(x), k = child("key")(x), v = child("value")(x);  // [B, T, H, D]
  return child("out")(attend(q, k, v));
}

Tensor CausalSelfAttention::forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                                           int64_t past) {
  const int64_t t = x.size(1);
  Tensor q = child("query")(x), k = child("key")(x), v = child("value")(x);
  k_cache.slice(1, past, past + t).copy_(k);
  v_cache.slice(1, past, past + t).copy_(v);
  Tensor k_all = k_cache.slice(1, 0, past + t), v_all = v_cache.slice(1, 0, past + t);
  return child("out")(attend(q, k_all, v_all));
}

// ---- MLP

Mlp::Mlp(const Config& c, nn::Generator& gen) {
  nn::DenseOptions fc{.activation = nn::Activation::Gelu, .kernel_init = nn::Init::normal(kInitStd)};
  nn::DenseOptions proj{.kernel_init = nn::Init::normal(kInitStd / std::sqrt(2.0 * static_cast<double>(c.n_layer)))};
  register_module("fc", std::make_shared<nn::Dense>(c.n_embd, 4 * c.n_embd, fc, gen));
  register_module("proj", std::make_shared<nn::Dense>(4 * c.n_embd, c.n_embd, proj, gen));
}

Tensor Mlp::forward(const Tensor& x) {
  return child("proj")(child("fc")(x));
}

// ---- block

Block::Block(const Config& c, nn::Generator& gen, nn::Generator* dropout_gen)
    : dropout_(c.dropout), dropout_gen_(dropout_gen) {
  nn::LayerNormOptions ln{.eps = c.layer_norm_eps};
  register_module("ln_1", std::make_shared<nn::LayerNorm>(c.n_embd, ln));
  register_module("attn", std::make_shared<CausalSelfAttention>(c, gen, dropout_gen));
  register_module("ln_2", std::make_shared<nn::LayerNorm>(c.n_embd, ln));
  register_module("mlp", std::make_shared<Mlp>(c, gen));
}

Tensor Block::residual_dropout(const Tensor& x) {
  return maybe_dropout(x, dropout_, is_training(), *dropout_gen_);
}

Tensor Block::forward(const Tensor& x) {
  Tensor h = add(x, residual_dropout(child("attn")(child("ln_1")(x))));
  return add(h, residual_dropout(child("mlp")(child("ln_2")(h))));
}

Tensor Block::forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache, int64_t past) {
  auto& attn = dynamic_cast<CausalSelfAttention&>(child("attn"));
  Tensor h = add(x, residual_dropout(attn.forward_cached(child("ln_1")(x), k_cache, v_cache, past)));
  return add(h, residual_dropout(child("mlp")(child("ln_2")(h))));
}

// ---- model

Gpt2::Gpt2(const Config& c, nn::Generator& gen, uint64_t dropout_seed) : config_(c), dropout_gen_(dropout_seed) {
  c.validate();
  nn::EmbeddingOptions emb{.init = nn::Init::normal(kInitStd)};
  register_module("wte", std::make_shared<nn::Embedding>(c.vocab_size, c.n_embd, emb, gen));
  register_module("wpe", std::make_shared<nn::Embedding>(c.n_ctx, c.n_embd, emb, gen));
  auto blocks = register_module("h", std::make_shared<nn::Sequential>());
  for (int64_t i = 0; i < c.n_layer; ++i) blocks->add(std::make_shared<Block>(c, gen, &dropout_gen_));
  register_module("ln_f", std::make_shared<nn::LayerNorm>(c.n_embd, nn::LayerNormOptions{.eps = c.layer_norm_eps}));
}

void Gpt2::check_ids(const Tensor& ids, int64_t past) const {
  LR_CHECK(ids.defined() && ids.dim() == 2, "GPT-2: ids must be [batch, time], got {}",
           ids.defined() ? ids.shape() : Shape{});
  LR_CHECK(ids.dtype() == DType::I64, "GPT-2: ids must be int64, got {}", dtype_name(ids.dtype()));
  LR_CHECK(ids.size(0) > 0 && ids.size(1) > 0, "GPT-2: ids {} are empty", ids.shape());
  LR_CHECK(past + ids.size(1) <= config_.n_ctx,
           "GPT-2: {} positions ({} cached + {} new) exceed the context length n_ctx = {}", past + ids.size(1), past,
           ids.size(1), config_.n_ctx);
  const std::vector<int64_t> host = ids.to_vector<int64_t>();
  const auto [lo, hi] = std::minmax_element(host.begin(), host.end());
  LR_CHECK(*lo >= 0 && *hi < config_.vocab_size, "GPT-2: token id {} is outside the vocabulary [0, {})",
           *lo < 0 ? *lo : *hi, config_.vocab_size);
}

Tensor Gpt2::embed(const Tensor& ids, int64_t past) {
  const Tensor& wpe = dynamic_cast<nn::Embedding&>(child("wpe")).embeddings();
  const Tensor on_device = ids.device() == wpe.device() ? ids : ids.to(wpe.device());
  Tensor x = add(child("wte")(on_device), wpe.slice(0, past, past + ids.size(1)));  // [B, T, C] + [T, C]
  return maybe_dropout(x, config_.dropout, is_training(), dropout_gen_);
}

Tensor Gpt2::head(const Tensor& h) {
  const Tensor& wte = dynamic_cast<nn::Embedding&>(child("wte")).embeddings();
  // wte is [V, C], a Dense kernel's [out, in] layout: the tied head's gradient lands in place.
  return nn::linear(child("ln_f")(h), wte, Tensor());
}

Tensor Gpt2::forward(const Tensor& ids) {
  check_ids(ids, 0);
  Tensor x = embed(ids, 0);
  for (const auto& [name, block] : child("h").children()) x = block->forward(x);
  return head(x);
}

Tensor Gpt2::hidden_states(const Tensor& ids) {
  check_ids(ids, 0);
  Tensor x = embed(ids, 0);
  for (const auto& [name, block] : child("h").children()) x = block->forward(x);
  return child("ln_f")(x);
}

Tensor Gpt2::forward(const Tensor& ids, KvCache& cache) {
  check_ids(ids, cache.length());
  LR_CHECK(static_cast<int64_t>(cache.k_.size()) == config_.n_layer,
           "GPT-2: the KV cache holds {} layers, the model has {} (make it with make_cache)", cache.k_.size(),
           config_.n_layer);
  LR_CHECK(ids.size(0) == cache.batch(), "GPT-2: ids batch {} does not match the KV cache's batch {}", ids.size(0),
           cache.batch());
  LR_CHECK(cache.length() + ids.size(1) <= cache.capacity(),
           "GPT-2: the KV cache holds {} of {} positions, no room for {} more", cache.length(), cache.capacity(),
           ids.size(1));
  NoGradGuard no_grad;
  const int64_t past = cache.length();
  Tensor x = embed(ids, past);
  int64_t i = 0;
  for (const auto& [name, block] : child("h").children()) {
    x = dynamic_cast<Block&>(*block).forward_cached(x, cache.k_[i], cache.v_[i], past);
    ++i;
  }
  cache.length_ = past + ids.size(1);
  return head(x);
}

KvCache Gpt2::make_cache(int64_t batch, int64_t max_len) const {
  LR_CHECK(batch > 0, "GPT-2: KV cache batch must be positive, got {}", batch);
  LR_CHECK(max_len > 0 && max_len <= config_.n_ctx, "GPT-2: KV cache length {} must be in [1, n_ctx = {}]", max_len,
           config_.n_ctx);
  const Tensor& wte = dynamic_cast<nn::Embedding&>(child("wte")).embeddings();
  KvCache cache;
  cache.batch_ = batch, cache.max_len_ = max_len;
  for (int64_t i = 0; i < config_.n_layer; ++i) {
    Shape s{batch, max_len, config_.n_head, config_.head_dim()};
    cache.k_.push_back(Tensor::zeros(s, wte.dtype(), wte.device()));
    cache.v_.push_back(Tensor::zeros(s, wte.dtype(), wte.device()));
  }
  return cache;
}

Tensor Gpt2::loss(const Tensor& ids, const Tensor& targets) {
  LR_CHECK(targets.defined() && targets.dtype() == DType::I64 && ids.defined() && targets.shape() == ids.shape(),
           "GPT-2: targets must be int64 with the ids' shape {}, got {} {}", ids.defined() ? ids.shape() : Shape{},
           targets.defined() ? dtype_name(targets.dtype()) : "undefined",
           targets.defined() ? targets.shape() : Shape{});
  check_ids(ids, 0);
  Tensor x = embed(ids, 0);
  for (const auto& [name, block] : child("h").children()) x = block->forward(x);
  const int64_t n = ids.numel(), V = config_.vocab_size;
  Tensor h = child("ln_f")(x).reshape({n, config_.n_embd});
  const Tensor& wte = dynamic_cast<nn::Embedding&>(child("wte")).embeddings();
  const Tensor t = (targets.device() == wte.device() ? targets : targets.to(wte.device())).reshape({n});
  // The head and the loss run over row chunks of at most loss_chunk_elems_ logits: [B·T, V] at once
  // is 412 MB for the small preset at B = 8, T = 256, beyond what the CPU allocator caches, so
  // every step would fault in fresh pages for the logits and again for their gradient.
  const int64_t rows = std::max<int64_t>(1, loss_chunk_elems_ / V);
  if (n <= rows) return cross_entropy(nn::linear(h, wte, Tensor()), t, -100);
  const std::vector<int64_t> host = t.to_vector<int64_t>();
  int64_t total = 0;
  for (int64_t v : host) total += v != -100;
  if (total == 0) return mul(sum(h), 0.0);  // nothing to score: 0, with a (zero) gradient path
  Tensor loss;
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t r1 = std::min(n, r0 + rows);
    const int64_t count = std::count_if(host.begin() + r0, host.begin() + r1, [](int64_t v) { return v != -100; });
    if (count == 0) continue;
    Tensor part = cross_entropy(nn::linear(h.slice(0, r0, r1), wte, Tensor()), t.slice(0, r0, r1), -100);
    part = mul(part, static_cast<double>(count) / static_cast<double>(total));  // chunk mean -> share of the mean
    loss = loss.defined() ? add(loss, part) : part;
  }
  return loss;
}

void Gpt2::set_loss_chunk_elems(int64_t elems) {
  LR_CHECK(elems > 0, "GPT-2: loss chunk size must be positive, got {}", elems);
  loss_chunk_elems_ = elems;
}

std::string Gpt2::describe() const {
  return detail::format("Gpt2(n_layer={}, n_head={}, n_embd={}, n_ctx={}, vocab={}, dropout={})", config_.n_layer,
                        config_.n_head, config_.n_embd, config_.n_ctx, config_.vocab_size, config_.dropout);
}

Device Gpt2::device() const {
  return dynamic_cast<nn::Embedding&>(child("wte")).embeddings().device();
}

}  // namespace lowrank::models::gpt2
