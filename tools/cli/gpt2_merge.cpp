// `lowrank gpt2 merge`: folds a PEFT LoRA adapter into its base GPT-2 (PEFT's merge_and_unload) and
// writes the merged model, in our layout or (--hf) Hugging Face's.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/gpt2/checkpoint.h"
#include "nn/lora.h"
#include "tools/cli/gpt2_common.h"
#include "tools/train/gpt2.h"
#include "tools/train/gpt2_lora.h"
#include "tools/train/setup.h"

namespace lowrank::cli::gpt2 {
namespace {

namespace fs = std::filesystem;
namespace mg = models::gpt2;

struct MergeFlags {
  std::string model = train::kGpt2DefaultOut;
  std::string adapter, out;
  bool hf = false, overwrite = false, json = false, quiet = false;
};

}  // namespace

RunFn register_gpt2_merge(CLI::App& gpt2) {
  auto* sub = gpt2.add_subcommand(
      "merge", "fold a LoRA adapter (PEFT's format, e.g. from gpt2 lora) into its base model and write the result");
  auto f = std::make_shared<MergeFlags>();
  sub->add_option("--model", f->model,
                  "the base: a run folder, a Hugging Face folder (model.safetensors + config.json) or a .safetensors "
                  "file")
      ->capture_default_str();
  sub->add_option("--adapter", f->adapter, "the adapter folder (adapter_model.safetensors + adapter_config.json)")
      ->required();
  sub->add_option("--out", f->out, "folder for the merged model")->required();
  sub->add_flag("--hf", f->hf,
                "write Hugging Face's layout (GPT2LMHeadModel: Conv1D weights, fused c_attn) instead of ours");
  sub->add_flag("--overwrite", f->overwrite, "replace a model already in --out");
  add_json_flag(sub, f->json);
  add_quiet_flag(sub, f->quiet);
  return [f]() {
    const char* cmd = "gpt2 merge";
    std::error_code ec;
    if (!f->overwrite && fs::exists(fs::path(f->out) / "model.safetensors", ec))
      train::usage_error("{}: {} already holds a model; pass --overwrite to replace it", cmd, f->out);
    std::unique_ptr<mg::Gpt2> model = train::load_gpt2_model(f->model, cmd);
    const auto layers = train::load_gpt2_adapter(*model, f->adapter, cmd);
    const std::string what = train::describe_gpt2_adapters(layers);
    bool base_scaled = false;
    for (const mg::Gpt2LoraLayer& l : layers) base_scaled = base_scaled || l.lora->base_scale() != 1.0;
    const int64_t merged = nn::merge_and_unload(*model);
    if (f->hf)
      mg::save_hf_checkpoint(*model, f->out);
    else
      mg::write_folder(f->out, [&](const std::string& dir) {
        mg::save_checkpoint(*model, dir, {{"merged_adapter", f->adapter}, {"base", f->model}});
      });
    if (f->json) {
      nlohmann::json j{{"model", f->model},         {"adapter", f->adapter}, {"out", f->out},
                       {"hf_layout", f->hf},        {"adapters", merged},    {"description", what},
                       {"base_scaled", base_scaled}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("merged %s into %s -> %s (%s layout)\n", what.c_str(), f->model.c_str(), f->out.c_str(),
                  f->hf ? "Hugging Face" : "lowrank");
    }
    if (base_scaled && !f->quiet)
      std::fprintf(stderr,
                   "gpt2 merge: note: the adapter scales its base (base-scale schedule); the merged model has it "
                   "folded in, which PEFT's own merge would not do\n");
    return kExitOk;
  };
}

}  // namespace lowrank::cli::gpt2
