// GPT-2 hyperparameters: the four OpenAI sizes, small presets for CPU work and tests, and the
// JSON forms (our config.json and Hugging Face's GPT2Config keys).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowrank::models::gpt2 {

inline constexpr int64_t kGpt2VocabSize = 50257;  // OpenAI's byte-level BPE, <|endoftext|> = 50256

struct Config {
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;  // divisible by n_head; head_dim = n_embd / n_head
  int64_t n_ctx = 1024;  // longest sequence (rows of the position embedding)
  int64_t vocab_size = kGpt2VocabSize;
  double dropout = 0.0;  // on embeddings, residual branches and attention probabilities (training only)
  double layer_norm_eps = 1e-5;

  int64_t head_dim() const { return n_embd / n_head; }
  // Throws a lowrank::Error naming the field when a value is out of range.
  void validate() const;
  // Parameter count with the tied head counted once (124,439,808 for "gpt2").
  int64_t num_parameters() const;

  // "gpt2" (124M: 12 layers, 12 heads, 768 wide), "gpt2-medium" (24, 16, 1024), "gpt2-large"
  // (36, 20, 1280), "gpt2-xl" (48, 25, 1600), all with context 1024 and dropout 0.1 as OpenAI
  // trained them; "small" (4 layers, 4 heads, 256 wide, context 256, dropout 0) for CPU training;
  // "tiny" (2 layers, 2 heads, 32 wide, context 32, vocab 64) for tests. Unknown names throw,
  // listing the known ones.
  static Config preset(const std::string& name);
  static std::vector<std::string> preset_names();

  // Our config.json: {"model_type": "gpt2", n_layer, n_head, n_embd, n_ctx, n_positions,
  // vocab_size, dropout, resid_pdrop, embd_pdrop, attn_pdrop, layer_norm_epsilon}. The HF names
  // are written too, so the file also reads as a Hugging Face GPT2Config.
  std::string to_json() const;
  // Reads either form: n_positions or n_ctx (n_positions wins when both are present),
  // "dropout" or HF's resid_pdrop/embd_pdrop/attn_pdrop (they must agree: the model has one
  // rate), layer_norm_epsilon. Missing keys keep the "gpt2" values (as HF's defaults do);
  // malformed JSON, wrong types and out-of-range values throw naming the key.
  static Config from_json(const std::string& text);
  // from_json of a file; errors name the path.
  static Config from_json_file(const std::string& path);
};

bool operator==(const Config& a, const Config& b);

}  // namespace lowrank::models::gpt2
