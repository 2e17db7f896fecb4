// `lowrank gpt2 eval`: perplexity of a GPT-2 (ours or Hugging Face's) on text files, encoded as in
// training (<|endoftext|> before each document), scored with sliding windows of the model's
// context that advance by --stride tokens, every token after the first scored exactly once.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/autograd.h"
#include "nn/lora.h"
#include "tools/cli/gpt2_common.h"
#include "tools/train/clock.h"
#include "tools/train/gpt2.h"
#include "tools/train/gpt2_lora.h"
#include "tools/train/progress.h"
#include "tools/train/setup.h"

namespace lowrank::cli::gpt2 {
namespace {

namespace mg = models::gpt2;

struct EvalFlags {
  std::string model = "runs/gpt2";
  std::string adapter;
  std::vector<std::string> data;
  std::string split = "all";
  double val_fraction = 0.05;
  std::string cache_dir, vocab;
  int64_t context = 0, stride = 0, batch = 4, max_tokens = 0;
  std::string device = "cpu";
  int threads = 0;
  bool json = false, quiet = false;
};

}  // namespace

RunFn register_gpt2_eval(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand("eval", "perplexity of a GPT-2 on text files (sliding windows)");
  auto f = std::make_shared<EvalFlags>();
  sub->add_option("--model", f->model,
                  "a run folder, a Hugging Face folder (model.safetensors + config.json) or a .safetensors file")
      ->capture_default_str();
  sub->add_option("--adapter", f->adapter,
                  "apply this LoRA adapter to --model (a folder from gpt2 lora, or one PEFT saved)");
  sub->add_option("--data,data", f->data,
                  std::string("text files or folders, encoded as in training (default: ") + mg::kDefaultCorpusDir + ")")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--split", f->split,
                  "all: every document; val or train: one side of the training run's held-out split")
      ->check(CLI::IsMember({"all", "val", "train"}))
      ->capture_default_str();
  sub->add_option("--val-fraction", f->val_fraction, "the held-out share the split was made with (gpt2 train's)")
      ->check(fraction_below_one())
      ->capture_default_str();
  sub->add_option("--context", f->context, "tokens each window sees (0: the model's n_ctx)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--stride", f->stride, "tokens between window starts (0: half the context)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--batch", f->batch, "windows per forward pass")->check(positive_int())->capture_default_str();
  sub->add_option("--max-tokens", f->max_tokens, "score only the first N tokens of the stream (0: all)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--cache-dir", f->cache_dir, "keep the encoded text in this folder's token cache");
  add_vocab_option(sub, f->vocab);
  add_device_options(sub, f->device, f->threads);
  add_json_flag(sub, f->json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    const Device device = train::setup_device(f->device, f->threads, "gpt2 eval");
    const mg::Tokenizer tok = train::load_gpt2_tokenizer(f->vocab, "gpt2 eval");
    std::unique_ptr<mg::Gpt2> model = train::load_gpt2_model(f->model, "gpt2 eval");
    train::check_vocab_fits(*model, tok, "gpt2 eval");
    if (!f->adapter.empty()) {
      const auto layers = train::load_gpt2_adapter(*model, f->adapter, "gpt2 eval");
      if (!f->quiet)
        std::fprintf(stderr, "gpt2 eval: %s from %s\n", train::describe_gpt2_adapters(layers).c_str(),
                     f->adapter.c_str());
      nn::merge_and_unload(*model);  // folded in once: the forward passes then cost what the base's do
    }
    model->to(device);
    model->eval();
    const int64_t n_ctx = model->config().n_ctx;
    const int64_t context = f->context == 0 ? n_ctx : f->context;
    LR_CHECK(context <= n_ctx, "gpt2 eval: --context {} is longer than the model's ({})", context, n_ctx);
    const int64_t stride = f->stride == 0 ? std::max<int64_t>(1, context / 2) : f->stride;
    LR_CHECK(stride <= context, "gpt2 eval: --stride {} is longer than the context ({})", stride, context);

    mg::TokenDataOptions dopt;
    dopt.files = mg::list_text_files(f->data.empty() ? std::vector<std::string>{mg::kDefaultCorpusDir} : f->data);
    dopt.val_fraction = f->split == "all" ? 0.0 : f->val_fraction;
    dopt.cache_dir = f->cache_dir;
    dopt.threads = f->threads > 0 ? f->threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const mg::TokenData data = mg::load_token_data(train::gpt2_text_encoder(tok, f->vocab), dopt);
    std::vector<uint16_t> stream = f->split == "val" ? data.val : data.train;
    if (f->max_tokens > 0 && static_cast<int64_t>(stream.size()) > f->max_tokens)
      stream.resize(static_cast<size_t>(f->max_tokens));
    LR_CHECK(stream.size() >= 2, "gpt2 eval: the {} text holds {} token(s); at least 2 are needed", f->split,
             stream.size());

    const std::vector<mg::EvalWindow> windows =
        mg::sliding_windows(static_cast<int64_t>(stream.size()), context, stride);
    NoGradGuard no_grad;
    train::ProgressLine status(!f->quiet);
    const double t0 = train::now_seconds();
    double nll = 0.0;
    int64_t scored = 0;
    for (size_t w0 = 0; w0 < windows.size();) {
      // Consecutive windows of one length share a forward pass; targets outside the scored range are -100.
      const int64_t len = windows[w0].end - windows[w0].begin - 1;
      size_t w1 = w0;
      while (w1 < windows.size() && static_cast<int64_t>(w1 - w0) < f->batch &&
             windows[w1].end - windows[w1].begin - 1 == len)
        ++w1;
      const auto b = static_cast<int64_t>(w1 - w0);
      std::vector<int64_t> x(static_cast<size_t>(b * len)), y(x.size());
      int64_t batch_scored = 0;
      for (int64_t i = 0; i < b; ++i) {
        const mg::EvalWindow& w = windows[w0 + static_cast<size_t>(i)];
        for (int64_t t = 0; t < len; ++t) {
          const int64_t target_pos = w.begin + t + 1;
          x[static_cast<size_t>(i * len + t)] = stream[static_cast<size_t>(w.begin + t)];
          const bool counts = target_pos >= w.score_from;
          y[static_cast<size_t>(i * len + t)] = counts ? stream[static_cast<size_t>(target_pos)] : -100;
          batch_scored += counts;
        }
      }
      const double mean =
          model->loss(Tensor::from_vector(x, {b, len}).to(device), Tensor::from_vector(y, {b, len}).to(device)).item();
      LR_CHECK(std::isfinite(mean), "gpt2 eval: the loss is {} on windows {}..{}", mean, w0, w1 - 1);
      nll += mean * static_cast<double>(batch_scored);
      scored += batch_scored;
      w0 = w1;
      status.draw(static_cast<double>(w0) / static_cast<double>(windows.size()),
                  detail::format("{}/{} windows, loss {}", w0, windows.size(), nll / static_cast<double>(scored)));
    }
    status.clear();
    const double seconds = train::now_seconds() - t0;
    const double loss = nll / static_cast<double>(scored);
    const double ppl = std::exp(loss);
    if (f->json) {
      nlohmann::json j{{"perplexity", ppl},
                       {"loss", loss},
                       {"tokens_scored", scored},
                       {"windows", windows.size()},
                       {"context", context},
                       {"stride", stride},
                       {"split", f->split},
                       {"documents", f->split == "val" ? data.val_documents : data.documents - data.val_documents},
                       {"seconds", seconds},
                       {"tokens_per_s", static_cast<double>(scored) / seconds},
                       {"model", f->model}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("perplexity %.3f (mean loss %.4f nats/token over %lld tokens; windows of %lld tokens every %lld)\n",
                  ppl, loss, static_cast<long long>(scored), static_cast<long long>(context),
                  static_cast<long long>(stride));
    }
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
