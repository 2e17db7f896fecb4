// LoRA on GPT-2: injecting adapters into named targets and blocks of a Gpt2, and the adapter
// files PEFT writes for Hugging Face's GPT2LMHeadModel (adapter_model.safetensors + adapter_config.json).
//
// PEFT's view of GPT-2 has four Conv1D layers per block (fan_in_fan_out: the weight is [in, out]
// and ΔW = lora_alpha/r · (B A)ᵀ): attn.c_attn (q, k and v fused, C -> 3C), attn.c_proj (our
// "out"), mlp.c_fc ("fc") and mlp.c_proj ("proj"). Our q, k and v are separate layers, so their
// adapters (rank r each) export as one c_attn adapter of rank r' = (number of q/k/v targets)·r:
// A' stacks their A's, B' holds each B in its q/k/v row block and in its own columns (zeros
// elsewhere), and lora_alpha' is chosen so that PEFT's scale on r' equals ours on r.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/gpt2/model.h"
#include "nn/lora.h"

namespace lowrank::models::gpt2 {

// The layers a GPT-2 LoRA can target, in block order: name -> layer path inside a block.
inline constexpr const char* kLoraTargets[] = {"query", "key", "value", "out", "fc", "proj"};
// "attn.query", "attn.out", "mlp.fc", ... for a target name; throws naming the known ones.
std::string lora_target_layer(const std::string& target);
// "query,value" -> {"query", "value"} in kLoraTargets order; unknown, repeated or no names throw.
std::vector<std::string> parse_lora_targets(const std::string& csv);
// "" or "all" -> every block; "0,2,5" or ranges "0-3,7" -> those (sorted, unique). A block outside
// [0, n_layer) throws naming it and the model's block count.
std::vector<int64_t> parse_lora_layers(const std::string& text, int64_t n_layer);

struct Gpt2LoraSpec {
  std::vector<std::string> targets{"query", "value"};  // the LoRA paper's default
  std::vector<int64_t> layers;                         // empty: every block
  nn::LoraConfig lora;
};

// One injected adapter and its path in the model ("h.3.attn.query").
struct Gpt2LoraLayer {
  std::string path;
  std::shared_ptr<nn::LoRA> lora;
};

// Wraps every target layer of every chosen block with a LoRA (seeded per layer from
// spec.lora.seed, so layers differ) and freezes the rest of the model, as PEFT's get_peft_model
// does. The model must have no adapters yet. Returns the adapters in block, then target order.
std::vector<Gpt2LoraLayer> inject_gpt2_lora(Gpt2& model, const Gpt2LoraSpec& spec);
// The adapters a model holds now, in block, then target order.
std::vector<Gpt2LoraLayer> gpt2_lora_layers(const Gpt2& model);

// ---- PEFT files

inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";

struct PeftAdapter {
  std::map<std::string, Tensor> tensors;        // PEFT's names
  std::map<std::string, std::string> metadata;  // safetensors metadata ("lowrank": our own spec)
  std::string config_json;                      // adapter_config.json
};

// PiSSA adapters change their base (it keeps W minus its top-r part), while PEFT's files apply to
// the original W. Such adapters export as PEFT converts them: rank 2r, A = [A; A0], B = [B, -B0]
// with the initial factors A0, B0 of each layer (by path), which the caller kept.
using LoraInitialFactors = std::map<std::string, std::pair<Tensor, Tensor>>;

// The adapters in `model` as PEFT stores them. Every adapter must share one rank, alpha and
// rslora setting (PEFT's config has one of each, plus rank/alpha patterns for c_attn).
// `base_model_name_or_path` goes into the config as PEFT's field of that name. A base scale other
// than 1 has no PEFT counterpart: it is kept in our metadata only.
PeftAdapter gpt2_adapter_to_peft(const Gpt2& model, const std::string& base_model_name_or_path,
                                 const LoraInitialFactors* pissa_initial = nullptr);
// Writes `dir`/adapter_model.safetensors and `dir`/adapter_config.json; a new folder is filled
// under a temporary name and renamed into place, so a failed save leaves nothing behind.
void save_peft_adapter(const Gpt2& model, const std::string& dir, const std::string& base_model_name_or_path,
                       const LoraInitialFactors* pissa_initial = nullptr);
// What `dir` (a folder with both files, or its adapter_model.safetensors) holds.
PeftAdapter read_peft_adapter(const std::string& dir);
// Injects the adapter into `model` (which must have none) and loads its weights. A c_attn adapter
// (any r, e.g. trained by PEFT) becomes q, k and v adapters of rank r sharing A, each taking its
// row block of B; one we exported goes back to the q/k/v adapters it came from. Missing, extra
// and mis-shaped tensors, unknown target modules and an adapter made for another model size are
// refused with one message naming them (the first few, and how many). `source` names it in messages.
std::vector<Gpt2LoraLayer> apply_peft_adapter(Gpt2& model, const PeftAdapter& adapter,
                                              const std::string& source = "adapter");
// read_peft_adapter + apply_peft_adapter.
std::vector<Gpt2LoraLayer> load_peft_adapter(Gpt2& model, const std::string& dir);

}  // namespace lowrank::models::gpt2
