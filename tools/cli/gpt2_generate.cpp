// `lowrank gpt2 generate`: samples text from a GPT-2 (ours or Hugging Face's), streaming each token
// to stdout as it is chosen; tokens/s (with or without the KV cache) go to stderr.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "models/gpt2/generate.h"
#include "nn/lora.h"
#include "tools/cli/gpt2_common.h"
#include "tools/train/gpt2.h"
#include "tools/train/gpt2_lora.h"
#include "tools/train/setup.h"

namespace lowrank::cli::gpt2 {
namespace {

namespace mg = models::gpt2;

struct GenerateFlags {
  std::string model = "runs/gpt2";
  std::string adapter;
  std::string prompt;
  std::string vocab;
  int64_t max_tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 1.0;
  uint64_t seed = 0;
  bool no_kv_cache = false, ignore_eot = false, json = false, quiet = false;
  std::string device = "cpu";
  int threads = 0;
};

}  // namespace

RunFn register_gpt2_generate(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand("generate", "sample text from a GPT-2, streamed to stdout as it comes");
  auto f = std::make_shared<GenerateFlags>();
  sub->add_option("--model", f->model,
                  "a run folder, a Hugging Face folder (model.safetensors + config.json) or a .safetensors file")
      ->capture_default_str();
  sub->add_option("--adapter", f->adapter,
                  "apply this LoRA adapter to --model (a folder from gpt2 lora, or one PEFT saved)");
  sub->add_option("--prompt", f->prompt,
                  "text to continue; it starts a new document (after <|endoftext|>), as in training");
  sub->add_option("--max-tokens", f->max_tokens, "new tokens at most")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--temperature", f->temperature, "softmax temperature (0: greedy)")
      ->check(non_negative_number())
      ->capture_default_str();
  sub->add_option("--top-k", f->top_k, "sample among the k most likely tokens (0: all)")
      ->check(non_negative_int())
      ->capture_default_str();
  sub->add_option("--top-p", f->top_p, "sample among the most likely tokens holding this much probability (1: all)")
      ->check(fraction_up_to_one())
      ->capture_default_str();
  sub->add_option("--seed", f->seed, "seed of the sampling")->check(unsigned_int())->capture_default_str();
  sub->add_flag("--no-kv-cache", f->no_kv_cache, "run the whole context for every token (for measuring)");
  sub->add_flag("--ignore-eot", f->ignore_eot, "go on past <|endoftext|> instead of stopping there");
  add_vocab_option(sub, f->vocab);
  add_device_options(sub, f->device, f->threads);
  add_json_flag(sub, f->json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    const Device device = train::setup_device(f->device, f->threads, "gpt2 generate");
    const mg::Tokenizer tok = train::load_gpt2_tokenizer(f->vocab, "gpt2 generate");
    std::unique_ptr<mg::Gpt2> model = train::load_gpt2_model(f->model, "gpt2 generate");
    train::check_vocab_fits(*model, tok, "gpt2 generate");
    if (!f->adapter.empty()) {
      const auto layers = train::load_gpt2_adapter(*model, f->adapter, "gpt2 generate");
      if (!f->quiet)
        std::fprintf(stderr, "gpt2 generate: %s from %s\n", train::describe_gpt2_adapters(layers).c_str(),
                     f->adapter.c_str());
      nn::merge_and_unload(*model);  // folded in once: the forward passes then cost what the base's do
    }
    model->to(device);

    // A prompt starts a new document, as every document did in training (text_data.h).
    std::vector<int64_t> prompt{tok.eot_id()};
    for (int64_t id : tok.encode(f->prompt, /*allow_special=*/true)) prompt.push_back(id);
    mg::GenerateOptions g;
    g.max_tokens = f->max_tokens;
    g.sampling = {.temperature = f->temperature, .top_k = f->top_k, .top_p = f->top_p};
    g.seed = f->seed;
    g.kv_cache = !f->no_kv_cache;
    g.stop_token = f->ignore_eot ? -1 : tok.eot_id();
    mg::check_sampling_options(g.sampling);

    std::string text;
    auto on_token = [&](int64_t id) {
      if (id == g.stop_token) return true;  // the end of the document is not part of the text
      const std::string piece = tok.decode_token(id);
      text += piece;
      if (!f->json) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      }
      return true;
    };
    if (!f->json) {
      std::fwrite(f->prompt.data(), 1, f->prompt.size(), stdout);
      std::fflush(stdout);
    }
    const mg::GenerateResult r = mg::generate(*model, prompt, g, on_token);
    const auto n = static_cast<double>(r.tokens.size());
    const double decode_s = r.seconds - r.prefill_seconds;
    // The first token comes from the prefill forward; the others from one step each.
    const double tps = r.seconds > 0 ? n / r.seconds : 0.0;
    const double step_tps = n > 1 && decode_s > 0 ? (n - 1) / decode_s : 0.0;
    if (f->json) {
      nlohmann::json j{{"prompt", f->prompt},
                       {"text", text},
                       {"ids", r.tokens},
                       {"prompt_tokens", prompt.size()},
                       {"tokens", r.tokens.size()},
                       {"stopped_at_eot", !r.tokens.empty() && r.tokens.back() == g.stop_token},
                       {"kv_cache", g.kv_cache},
                       {"seconds", r.seconds},
                       {"prefill_seconds", r.prefill_seconds},
                       {"tokens_per_s", tps},
                       {"decode_tokens_per_s", step_tps},
                       {"seed", f->seed}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("\n");
    }
    if (!f->quiet)
      std::fprintf(
          stderr,
          "gpt2 generate: %lld tokens in %.2f s: %.1f tokens/s (%.1f tokens/s after the %.3f s prefill; KV cache %s)\n",
          static_cast<long long>(r.tokens.size()), r.seconds, tps, step_tps, r.prefill_seconds,
          g.kv_cache ? "on" : "off");
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
