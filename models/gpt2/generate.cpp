// The generation loop (see generate.h): one window rule for both modes, the KV cache refilled when
// the window moves, the last position's logits sampled on the host.
#include "models/gpt2/generate.h"

#include "core/autograd.h"
#include "core/clock.h"

namespace lowrank::models::gpt2 {

namespace {

Tensor ids_tensor(const std::vector<int64_t>& all, size_t from, Device device) {
  std::vector<int64_t> part(all.begin() + static_cast<std::ptrdiff_t>(from), all.end());
  Tensor t = Tensor::from_vector(part, {1, static_cast<int64_t>(part.size())});
  return device.is_cpu() ? t : t.to(device);
}

// logits [1, T, V] -> the last position's row on the host.
std::vector<float> last_row(const Tensor& logits) {
  const int64_t t = logits.size(1);
  return logits.select(0, 0).select(0, t - 1).to(DType::F32).to_vector<float>();
}

// Restores the module's training mode on every way out.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalModeGuard() { m_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  nn::Module& m_;
  bool was_training_;
};

}  // namespace

GenerateResult generate(Gpt2& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                        const TokenCallback& on_token) {
  const Config& cfg = model.config();
  LR_CHECK(!prompt.empty(), "generate: the prompt is empty (start from <|endoftext|> for unconditional text)");
  LR_CHECK(o.max_tokens >= 0, "generate: max tokens must be >= 0, got {}", o.max_tokens);
  LR_CHECK(cfg.n_ctx >= 2, "generate: the model's context ({}) is too short to generate with", cfg.n_ctx);
  for (size_t i = 0; i < prompt.size(); ++i)
    LR_CHECK(prompt[i] >= 0 && prompt[i] < cfg.vocab_size, "generate: prompt token {} is id {}, outside [0, {})", i,
             prompt[i], cfg.vocab_size);
  check_sampling_options(o.sampling);

  NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);
  const Device device = model.device();
  const size_t n_ctx = static_cast<size_t>(cfg.n_ctx);
  Sampler sampler(o.sampling, o.seed);
  GenerateResult r;
  const double t0 = now_seconds();

  std::vector<int64_t> all = prompt;
  size_t window = 0;  // the model sees all[window:]
  auto move_window_if_full = [&] {
    if (all.size() - window <= n_ctx) return false;
    window = all.size() - n_ctx / 2;
    return true;
  };
  if (move_window_if_full()) ++r.context_refills;

  KvCache cache;
  if (o.kv_cache) cache = model.make_cache(1, cfg.n_ctx);
  auto full_forward = [&] {
    return last_row(o.kv_cache ? model.forward(ids_tensor(all, window, device), cache)
                               : model.forward(ids_tensor(all, window, device)));
  };
  if (o.max_tokens == 0) return r;
  std::vector<float> logits = full_forward();
  r.prefill_seconds = now_seconds() - t0;

  for (int64_t i = 0; i < o.max_tokens; ++i) {
    const int64_t token = sampler.next(logits);
    all.push_back(token);
    r.tokens.push_back(token);
    if (on_token && !on_token(token)) {
      r.stopped = true;
      break;
    }
    if (token == o.stop_token) {
      r.stopped = true;
      break;
    }
    if (i + 1 == o.max_tokens) break;
    if (move_window_if_full()) {
      ++r.context_refills;
      if (o.kv_cache) cache.reset();
      logits = full_forward();
    } else if (o.kv_cache) {
      logits = last_row(model.forward(ids_tensor(all, all.size() - 1, device), cache));
    } else {
      logits = full_forward();
    }
  }
  r.seconds = now_seconds() - t0;
  return r;
}

}  // namespace lowrank::models::gpt2
