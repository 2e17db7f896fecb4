// GPT-2 presets and config.json reading/writing (ours and Hugging Face's key names).
#include "models/gpt2/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/io/json_util.h"

namespace lowrank::models::gpt2 {
namespace {

using nlohmann::json;

struct Preset {
  const char* name;
  int64_t n_layer, n_head, n_embd, n_ctx, vocab;
  double dropout;
};

// OpenAI's four sizes (HF's GPT2Config defaults: pdrop 0.1, eps 1e-5), and two for CPU work.
constexpr Preset kPresets[] = {
    {"gpt2", 12, 12, 768, 1024, kGpt2VocabSize, 0.1},        {"gpt2-medium", 24, 16, 1024, 1024, kGpt2VocabSize, 0.1},
    {"gpt2-large", 36, 20, 1280, 1024, kGpt2VocabSize, 0.1}, {"gpt2-xl", 48, 25, 1600, 1024, kGpt2VocabSize, 0.1},
    {"small", 4, 4, 256, 256, kGpt2VocabSize, 0.0},          {"tiny", 2, 2, 32, 32, 64, 0.0},
};

// Far above every published GPT-2/GPT-3 size (GPT-3 175B: 96 layers, 96 heads, 12288 wide, context
// 2048, vocab 50257) and far below what would wrap a 64-bit size; a config outside them is a typo
// or a lie, refused before anything is allocated.
constexpr int64_t kMaxLayers = 1024, kMaxHeads = 1024, kMaxEmbd = 65536, kMaxCtx = 1 << 20, kMaxVocab = 1 << 24;
constexpr int64_t kMaxParameters = int64_t{1} << 40;

int64_t get_int(const json& j, const char* key, int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  LR_CHECK(v.is_number_integer(), "GPT-2 config: \"{}\" must be an integer, got {}", key, io::json_excerpt(v));
  LR_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
           "GPT-2 config: \"{}\" is {}, far out of range", key, io::json_excerpt(v));
  return v.get<int64_t>();
}

double get_double(const json& j, const char* key, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  LR_CHECK(v.is_number(), "GPT-2 config: \"{}\" must be a number, got {}", key, io::json_excerpt(v));
  return v.get<double>();
}

}  // namespace

void Config::validate() const {
  LR_CHECK(n_layer > 0 && n_layer <= kMaxLayers, "GPT-2 config: n_layer must be in 1..{}, got {}", kMaxLayers, n_layer);
  LR_CHECK(n_head > 0 && n_head <= kMaxHeads, "GPT-2 config: n_head must be in 1..{}, got {}", kMaxHeads, n_head);
  LR_CHECK(n_embd > 0 && n_embd <= kMaxEmbd, "GPT-2 config: n_embd must be in 1..{}, got {}", kMaxEmbd, n_embd);
  LR_CHECK(n_embd % n_head == 0, "GPT-2 config: n_embd {} must be a multiple of n_head {}", n_embd, n_head);
  LR_CHECK(n_ctx > 0 && n_ctx <= kMaxCtx, "GPT-2 config: n_ctx (n_positions) must be in 1..{}, got {}", kMaxCtx, n_ctx);
  LR_CHECK(vocab_size > 0 && vocab_size <= kMaxVocab, "GPT-2 config: vocab_size must be in 1..{}, got {}", kMaxVocab,
           vocab_size);
  // Within the bounds above this cannot overflow (< 2^24 · 2^16 + 2^10 · 13 · 2^32).
  LR_CHECK(num_parameters() <= kMaxParameters,
           "GPT-2 config: n_layer {}, n_embd {}, n_ctx {}, vocab_size {} make {} parameters, more than the {} allowed",
           n_layer, n_embd, n_ctx, vocab_size, num_parameters(), kMaxParameters);
  LR_CHECK(dropout >= 0.0 && dropout < 1.0, "GPT-2 config: dropout must be in [0, 1), got {}", dropout);
  LR_CHECK(layer_norm_eps > 0.0, "GPT-2 config: layer_norm_epsilon must be positive, got {}", layer_norm_eps);
}

int64_t Config::num_parameters() const {
  const int64_t c = n_embd;
  const int64_t per_block = 2 * 2 * c              // ln_1, ln_2
                            + 3 * (c * c + c)      // query, key, value
                            + (c * c + c)          // out
                            + (c * 4 * c + 4 * c)  // fc
                            + (4 * c * c + c);     // proj
  return vocab_size * c + n_ctx * c + n_layer * per_block + 2 * c;
}

Config Config::preset(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) {
      Config c;
      c.n_layer = p.n_layer, c.n_head = p.n_head, c.n_embd = p.n_embd, c.n_ctx = p.n_ctx;
      c.vocab_size = p.vocab, c.dropout = p.dropout;
      return c;
    }
  std::string known;
  for (const Preset& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  LR_FAIL("GPT-2: unknown preset '{}' (known: {})", name, known);
}

std::vector<std::string> Config::preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

std::string Config::to_json() const {
  json j;
  j["model_type"] = "gpt2";
  j["architectures"] = json::array({"GPT2LMHeadModel"});
  j["n_layer"] = n_layer;
  j["n_head"] = n_head;
  j["n_embd"] = n_embd;
  j["n_ctx"] = n_ctx;
  j["n_positions"] = n_ctx;
  j["vocab_size"] = vocab_size;
  j["dropout"] = dropout;
  j["resid_pdrop"] = dropout;
  j["embd_pdrop"] = dropout;
  j["attn_pdrop"] = dropout;
  j["layer_norm_epsilon"] = layer_norm_eps;
  j["activation_function"] = "gelu_new";
  j["tie_word_embeddings"] = true;
  return j.dump(2) + "\n";
}

Config Config::from_json(const std::string& text) {
  json j = io::parse_json(text, "GPT-2 config");
  LR_CHECK(j.is_object(), "GPT-2 config: expected a JSON object, got {}", j.type_name());
  if (j.contains("model_type") && j["model_type"].is_string())
    LR_CHECK(j["model_type"].get<std::string>() == "gpt2", "GPT-2 config: model_type is {}, not \"gpt2\"",
             io::json_excerpt(j["model_type"]));
  if (j.contains("activation_function") && j["activation_function"].is_string()) {
    const std::string act = j["activation_function"].get<std::string>();
    LR_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh",
             "GPT-2 config: activation_function {} is not supported (only the tanh GELU, \"gelu_new\")",
             io::json_excerpt(j["activation_function"]));
  }
  if (j.contains("tie_word_embeddings") && j["tie_word_embeddings"].is_boolean())
    LR_CHECK(j["tie_word_embeddings"].get<bool>(), "GPT-2 config: untied word embeddings are not supported");
  Config c = preset("gpt2");
  c.n_layer = get_int(j, "n_layer", c.n_layer);
  c.n_head = get_int(j, "n_head", c.n_head);
  c.n_embd = get_int(j, "n_embd", c.n_embd);
  c.n_ctx = get_int(j, "n_positions", get_int(j, "n_ctx", c.n_ctx));
  c.vocab_size = get_int(j, "vocab_size", c.vocab_size);
  c.layer_norm_eps = get_double(j, "layer_norm_epsilon", c.layer_norm_eps);
  if (j.contains("dropout")) {
    c.dropout = get_double(j, "dropout", c.dropout);
  } else {
    const double resid = get_double(j, "resid_pdrop", c.dropout);
    const double embd = get_double(j, "embd_pdrop", resid);
    const double attn = get_double(j, "attn_pdrop", resid);
    LR_CHECK(resid == embd && resid == attn,
             "GPT-2 config: resid_pdrop {}, embd_pdrop {} and attn_pdrop {} differ; this model has one dropout rate",
             resid, embd, attn);
    c.dropout = resid;
  }
  c.validate();
  return c;
}

Config Config::from_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LR_CHECK(in.good(), "GPT-2 config: cannot open '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return from_json(ss.str());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

bool operator==(const Config& a, const Config& b) {
  return a.n_layer == b.n_layer && a.n_head == b.n_head && a.n_embd == b.n_embd && a.n_ctx == b.n_ctx &&
         a.vocab_size == b.vocab_size && a.dropout == b.dropout && a.layer_norm_eps == b.layer_norm_eps;
}

}  // namespace lowrank::models::gpt2
