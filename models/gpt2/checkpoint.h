// GPT-2 weights on disk: Hugging Face's checkpoints (model.safetensors + config.json, Conv1D
// layout, fused c_attn) in both directions, and our own format (our module names + config.json).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "models/gpt2/config.h"
#include "models/gpt2/model.h"

namespace lowrank::models::gpt2 {

// ---- name and layout conversion (no files)

// HF GPT-2 tensors -> our state dict (names and shapes as Gpt2::named_parameters gives them).
// Accepts names with or without the "transformer." prefix; splits c_attn [C, 3C] into the
// query/key/value kernels [C, H, D] (biases [3C] into [H, D]); reshapes attn.c_proj [C, C] to the
// out kernel [H, D, C]; transposes the MLP's Conv1D [in, out] weights to Dense [out, in]; ignores
// the attn.bias / attn.masked_bias mask buffers; accepts lm_head.weight only when it equals wte
// (the head is tied). A missing, extra or mis-shaped tensor is refused with one message naming
// every such tensor and, for a shape, the file's and the expected shape. `source` names the file
// in messages.
std::map<std::string, Tensor> hf_to_state(const std::map<std::string, Tensor>& hf, const Config& config,
                                          const std::string& source = "checkpoint");
// The inverse: our names -> HF names without prefix (wte.weight, h.0.attn.c_attn.weight, ...).
// Also maps gradients (a map of our parameter names to their grads) to HF's layout.
std::map<std::string, Tensor> state_to_hf(const std::map<std::string, Tensor>& state, const Config& config);

// ---- folders

// Fills the folder `dir` through `fill(folder)`. A folder that does not exist yet is filled under
// a temporary name beside it and renamed into place, so a failure leaves nothing behind; an
// existing folder has its files replaced in place (each writer there must write atomically).
void write_folder(const std::string& dir, const std::function<void(const std::string& folder)>& fill);

// ---- Hugging Face files

// `path`: a folder holding config.json, or the config.json file itself.
Config read_hf_config(const std::string& path);
// Loads HF weights into `model` (its config must match the file's shapes). `path`: a
// model.safetensors file or a folder holding one. F16/BF16 files are widened to f32.
void load_hf_checkpoint(Gpt2& model, const std::string& path);
// Writes `dir`/model.safetensors in HF names (no prefix, no lm_head: it is tied) and
// `dir`/config.json, atomically (write_folder); transformers' GPT2LMHeadModel.from_pretrained(dir)
// reads them. A model with adapters is refused before anything is written (merge_and_unload first).
void save_hf_checkpoint(const Gpt2& model, const std::string& dir);

// ---- our format

// Writes `dir`/model.safetensors (our parameter names; metadata "format": "lowrank-gpt2" and
// "config": the config JSON, so the file alone describes the model) and `dir`/config.json,
// each atomically; creates `dir`. The model must be a plain Gpt2 (a model with LoRA adapters
// injected has other names: merge them or save the adapters with nn::save_lora_adapter).
void save_checkpoint(const Gpt2& model, const std::string& dir,
                     const std::map<std::string, std::string>& metadata = {});
// Reads what save_checkpoint wrote. `path`: the folder or its model.safetensors.
std::unique_ptr<Gpt2> load_checkpoint(const std::string& path);

// Either format, detected from the tensor names: a folder (model.safetensors + config.json) or a
// .safetensors file (our files carry their config; an HF file needs config.json beside it).
std::unique_ptr<Gpt2> load_any(const std::string& path);

}  // namespace lowrank::models::gpt2
