// GPT-2 checkpoints: Hugging Face's layout <-> our module names, and our own folder format.
#include "models/gpt2/checkpoint.h"

#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <set>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"

namespace lowrank::models::gpt2 {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHfPrefix = "transformer.";
constexpr const char* kWeightsFile = "model.safetensors";
constexpr const char* kConfigFile = "config.json";
constexpr const char* kFormat = "lowrank-gpt2";
constexpr size_t kMaxListedProblems = 12;  // a message naming 200 tensors helps nobody

std::string layer(int64_t i, const char* rest) {
  return "h." + std::to_string(i) + "." + rest;
}

// HF names (no prefix) and shapes for `c`, in file order.
std::vector<std::pair<std::string, Shape>> hf_shapes(const Config& c) {
  const int64_t C = c.n_embd;
  std::vector<std::pair<std::string, Shape>> s{{"wte.weight", {c.vocab_size, C}}, {"wpe.weight", {c.n_ctx, C}}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    s.insert(s.end(), {{layer(i, "ln_1.weight"), {C}},
                       {layer(i, "ln_1.bias"), {C}},
                       {layer(i, "attn.c_attn.weight"), {C, 3 * C}},
                       {layer(i, "attn.c_attn.bias"), {3 * C}},
                       {layer(i, "attn.c_proj.weight"), {C, C}},
                       {layer(i, "attn.c_proj.bias"), {C}},
                       {layer(i, "ln_2.weight"), {C}},
                       {layer(i, "ln_2.bias"), {C}},
                       {layer(i, "mlp.c_fc.weight"), {C, 4 * C}},
                       {layer(i, "mlp.c_fc.bias"), {4 * C}},
                       {layer(i, "mlp.c_proj.weight"), {4 * C, C}},
                       {layer(i, "mlp.c_proj.bias"), {C}}});
  }
  s.insert(s.end(), {{"ln_f.weight", {C}}, {"ln_f.bias", {C}}});
  return s;
}

// Our module names and shapes for `c` (Gpt2::state_dict's, which a test compares with this).
std::vector<std::pair<std::string, Shape>> our_shapes(const Config& c) {
  const int64_t C = c.n_embd, H = c.n_head, D = c.head_dim();
  std::vector<std::pair<std::string, Shape>> s{
      {"wte.embeddings", {c.vocab_size, C}}, {"wpe.embeddings", {c.n_ctx, C}}, {"ln_f.gamma", {C}}, {"ln_f.beta", {C}}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    s.insert(s.end(), {{layer(i, "ln_1.gamma"), {C}},
                       {layer(i, "ln_1.beta"), {C}},
                       {layer(i, "ln_2.gamma"), {C}},
                       {layer(i, "ln_2.beta"), {C}},
                       {layer(i, "attn.query.kernel"), {C, H, D}},
                       {layer(i, "attn.query.bias"), {H, D}},
                       {layer(i, "attn.key.kernel"), {C, H, D}},
                       {layer(i, "attn.key.bias"), {H, D}},
                       {layer(i, "attn.value.kernel"), {C, H, D}},
                       {layer(i, "attn.value.bias"), {H, D}},
                       {layer(i, "attn.out.kernel"), {H, D, C}},
                       {layer(i, "attn.out.bias"), {C}},
                       {layer(i, "mlp.fc.kernel"), {4 * C, C}},
                       {layer(i, "mlp.fc.bias"), {4 * C}},
                       {layer(i, "mlp.proj.kernel"), {C, 4 * C}},
                       {layer(i, "mlp.proj.bias"), {C}}});
  }
  return s;
}

// HF's causal-mask buffers: h.<n>.attn.bias and h.<n>.attn.masked_bias (saved, never learned).
bool is_mask_buffer(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return false;
  size_t dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2) return false;
  for (size_t i = 2; i < dot; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  const std::string rest = name.substr(dot + 1);
  return rest == "attn.bias" || rest == "attn.masked_bias";
}

void throw_problems(const std::string& source, const Config& c, const std::vector<std::string>& problems) {
  std::string msg = detail::format(
      "GPT-2: {} does not fit the model (n_layer {}, n_head {}, n_embd {}, n_ctx {}, "
      "vocab {}): {} problem{}: ",
      source, c.n_layer, c.n_head, c.n_embd, c.n_ctx, c.vocab_size, problems.size(), problems.size() == 1 ? "" : "s");
  for (size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i) msg += (i ? "; " : "") + problems[i];
  if (problems.size() > kMaxListedProblems)
    msg += detail::format("; and {} more", problems.size() - kMaxListedProblems);
  throw Error(msg);
}

// The folder and the weights file that `path` (either of them) stands for.
std::pair<fs::path, fs::path> resolve(const std::string& path, const char* what) {
  fs::path p(path);
  std::error_code ec;
  LR_CHECK(fs::exists(p, ec), "GPT-2: {} '{}' does not exist", what, path);
  if (fs::is_directory(p, ec)) {
    fs::path w = p / kWeightsFile;
    LR_CHECK(fs::exists(w, ec),
             "GPT-2: folder '{}' holds no {} (pytorch_model.bin files are not read: convert "
             "them to safetensors)",
             path, kWeightsFile);
    return {p, w};
  }
  return {p.parent_path().empty() ? fs::path(".") : p.parent_path(), p};
}

enum class Format { Ours, HuggingFace };

Format detect(const io::SafetensorsFile& f, const std::string& source) {
  if (f.tensors.count("wte.embeddings")) return Format::Ours;
  if (f.tensors.count("wte.weight") || f.tensors.count(std::string(kHfPrefix) + "wte.weight"))
    return Format::HuggingFace;
  std::string names;
  size_t n = 0;
  for (const auto& [k, t] : f.tensors) {
    if (n++ == 5) break;
    names += (names.empty() ? "" : ", ") + k;
  }
  LR_FAIL(
      "GPT-2: {} is not a GPT-2 checkpoint (no wte.embeddings, wte.weight or transformer.wte.weight; it holds "
      "{} tensors: {}{})",
      source, f.tensors.size(), names, f.tensors.size() > 5 ? ", ..." : "");
}

// The file's tensors against the config's, before a model of that config is built: a config that
// lies about its size (n_layer 1e5) must cost a comparison of names, not a model's allocation.
void check_our_tensors(const std::map<std::string, Tensor>& tensors, const Config& c, const std::string& source) {
  std::vector<std::string> problems;
  size_t found = 0;
  for (const auto& [name, shape] : our_shapes(c)) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back(detail::format("missing tensor '{}' {}", name, shape));
    } else {
      ++found;
      if (it->second.shape() != shape)
        problems.push_back(
            detail::format("tensor '{}' is {} in the file, the model expects {}", name, it->second.shape(), shape));
    }
  }
  if (found < tensors.size()) {
    std::set<std::string> expected;
    for (const auto& [name, shape] : our_shapes(c)) expected.insert(name);
    for (const auto& [name, t] : tensors)
      if (!expected.count(name)) problems.push_back(detail::format("unexpected tensor '{}' {}", name, t.shape()));
  }
  if (!problems.empty()) throw_problems(source, c, problems);
}

Config our_config(const io::SafetensorsFile& f, const fs::path& dir, const std::string& source) {
  auto it = f.metadata.find("config");
  if (it != f.metadata.end()) {
    try {
      return Config::from_json(it->second);
    } catch (const Error& e) {
      throw Error(source + ": metadata \"config\": " + e.what());
    }
  }
  fs::path cfg = dir / kConfigFile;
  std::error_code ec;
  LR_CHECK(fs::exists(cfg, ec), "GPT-2: {} carries no config and there is no {} beside it", source, cfg.string());
  return Config::from_json_file(cfg.string());
}

void load_into(Gpt2& model, const std::map<std::string, Tensor>& state, const std::string& source) {
  try {
    model.load_state_dict(state, /*strict=*/true);
  } catch (const Error& e) {
    throw Error("GPT-2: " + source + ": " + e.what());
  }
}

std::unique_ptr<Gpt2> build(const io::SafetensorsFile& f, const fs::path& dir, const std::string& source) {
  if (detect(f, source) == Format::Ours) {
    const Config config = our_config(f, dir, source);
    check_our_tensors(f.tensors, config, source);
    auto model = std::make_unique<Gpt2>(config);
    load_into(*model, f.tensors, source);
    return model;
  }
  fs::path cfg = dir / kConfigFile;
  std::error_code ec;
  LR_CHECK(fs::exists(cfg, ec), "GPT-2: {} is a Hugging Face checkpoint and needs its {} beside it", source,
           cfg.string());
  Config config = Config::from_json_file(cfg.string());
  std::map<std::string, Tensor> state = hf_to_state(f.tensors, config, source);  // checks before building
  auto model = std::make_unique<Gpt2>(config);
  load_into(*model, state, source);
  return model;
}

}  // namespace

std::map<std::string, Tensor> hf_to_state(const std::map<std::string, Tensor>& hf_in, const Config& c,
                                          const std::string& source) {
  NoGradGuard no_grad;
  const std::string prefix = kHfPrefix;
  std::map<std::string, Tensor> hf;
  for (const auto& [name, t] : hf_in) {
    std::string n = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
    LR_CHECK(hf.emplace(n, t).second, "GPT-2: {} holds '{}' both with and without the '{}' prefix", source, n, prefix);
  }
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, shape] : hf_shapes(c)) {
    expected.insert(name);
    auto it = hf.find(name);
    if (it == hf.end())
      problems.push_back(detail::format("missing tensor '{}' {}", name, shape));
    else if (it->second.shape() != shape)
      problems.push_back(
          detail::format("tensor '{}' is {} in the file, the model expects {}", name, it->second.shape(), shape));
  }
  for (const auto& [name, t] : hf) {
    if (expected.count(name) || is_mask_buffer(name)) continue;
    if (name == "lm_head.weight") {
      const Shape want{c.vocab_size, c.n_embd};
      if (t.shape() != want)
        problems.push_back(
            detail::format("tensor 'lm_head.weight' is {} in the file, the model expects {} (tied "
                           "to wte)",
                           t.shape(), want));
      continue;
    }
    problems.push_back(detail::format("unexpected tensor '{}' {}", name, t.shape()));
  }
  if (!problems.empty()) throw_problems(source, c, problems);

  if (auto it = hf.find("lm_head.weight"); it != hf.end()) {
    Tensor diff = max(abs(sub(it->second.to(DType::F32), hf.at("wte.weight").to(DType::F32))));
    const double d = diff.item();
    LR_CHECK(d == 0.0,
             "GPT-2: {}: lm_head.weight differs from wte.weight (max |difference| {}); this model ties its "
             "head to the token embedding",
             source, d);
  }

  const int64_t C = c.n_embd, H = c.n_head, D = c.head_dim();
  std::map<std::string, Tensor> s;
  s["wte.embeddings"] = hf.at("wte.weight");
  s["wpe.embeddings"] = hf.at("wpe.weight");
  s["ln_f.gamma"] = hf.at("ln_f.weight");
  s["ln_f.beta"] = hf.at("ln_f.bias");
  const char* qkv[] = {"query", "key", "value"};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    auto get = [&](const char* rest) { return hf.at(layer(i, rest)); };
    auto put = [&](const std::string& rest, const Tensor& t) { s[layer(i, rest.c_str())] = t; };
    put("ln_1.gamma", get("ln_1.weight"));
    put("ln_1.beta", get("ln_1.bias"));
    put("ln_2.gamma", get("ln_2.weight"));
    put("ln_2.beta", get("ln_2.bias"));
    const Tensor w = get("attn.c_attn.weight"), b = get("attn.c_attn.bias");
    for (int64_t j = 0; j < 3; ++j) {
      // Columns [j·C, (j+1)·C) of the fused [in, 3·out] weight are q, k or v; a column index
      // h·D + d is head h, lane d, so the [C, C] block reshapes to [C, H, D] as it stands.
      put(std::string("attn.") + qkv[j] + ".kernel", w.slice(1, j * C, (j + 1) * C).contiguous().reshape({C, H, D}));
      put(std::string("attn.") + qkv[j] + ".bias", b.slice(0, j * C, (j + 1) * C).contiguous().reshape({H, D}));
    }
    put("attn.out.kernel", get("attn.c_proj.weight").contiguous().reshape({H, D, C}));
    put("attn.out.bias", get("attn.c_proj.bias"));
    put("mlp.fc.kernel", get("mlp.c_fc.weight").mT().contiguous());  // Conv1D [in, out] -> Dense [out, in]
    put("mlp.fc.bias", get("mlp.c_fc.bias"));
    put("mlp.proj.kernel", get("mlp.c_proj.weight").mT().contiguous());
    put("mlp.proj.bias", get("mlp.c_proj.bias"));
  }
  return s;
}

std::map<std::string, Tensor> state_to_hf(const std::map<std::string, Tensor>& s, const Config& c) {
  NoGradGuard no_grad;
  const int64_t C = c.n_embd;
  auto get = [&](const std::string& name) {
    auto it = s.find(name);
    LR_CHECK(it != s.end() && it->second.defined(), "GPT-2: state_to_hf: no tensor '{}'", name);
    return it->second;
  };
  std::map<std::string, Tensor> hf;
  hf["wte.weight"] = get("wte.embeddings");
  hf["wpe.weight"] = get("wpe.embeddings");
  hf["ln_f.weight"] = get("ln_f.gamma");
  hf["ln_f.bias"] = get("ln_f.beta");
  for (int64_t i = 0; i < c.n_layer; ++i) {
    auto ours = [&](const char* rest) { return get(layer(i, rest)); };
    auto put = [&](const char* rest, const Tensor& t) { hf[layer(i, rest)] = t; };
    put("ln_1.weight", ours("ln_1.gamma"));
    put("ln_1.bias", ours("ln_1.beta"));
    put("ln_2.weight", ours("ln_2.gamma"));
    put("ln_2.bias", ours("ln_2.beta"));
    put("attn.c_attn.weight",
        concat({ours("attn.query.kernel").reshape({C, C}), ours("attn.key.kernel").reshape({C, C}),
                ours("attn.value.kernel").reshape({C, C})},
               1));
    put("attn.c_attn.bias", concat({ours("attn.query.bias").reshape({C}), ours("attn.key.bias").reshape({C}),
                                    ours("attn.value.bias").reshape({C})},
                                   0));
    put("attn.c_proj.weight", ours("attn.out.kernel").reshape({C, C}));
    put("attn.c_proj.bias", ours("attn.out.bias"));
    put("mlp.c_fc.weight", ours("mlp.fc.kernel").mT().contiguous());
    put("mlp.c_fc.bias", ours("mlp.fc.bias"));
    put("mlp.c_proj.weight", ours("mlp.proj.kernel").mT().contiguous());
    put("mlp.c_proj.bias", ours("mlp.proj.bias"));
  }
  return hf;
}

Config read_hf_config(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) p /= kConfigFile;
  LR_CHECK(fs::exists(p, ec), "GPT-2: no config file '{}'", p.string());
  return Config::from_json_file(p.string());
}

void load_hf_checkpoint(Gpt2& model, const std::string& path) {
  auto [dir, file] = resolve(path, "checkpoint");
  io::SafetensorsFile f = io::load_safetensors(file.string());
  LR_CHECK(detect(f, file.string()) == Format::HuggingFace,
           "GPT-2: {} is a lowrank checkpoint, not a Hugging Face one (use load_checkpoint or load_any)",
           file.string());
  load_into(model, hf_to_state(f.tensors, model.config(), file.string()), file.string());
}

void write_folder(const std::string& dir, const std::function<void(const std::string& folder)>& fill) {
  std::error_code ec;
  const fs::path target(dir);
  if (fs::exists(target, ec)) {
    LR_CHECK(fs::is_directory(target, ec), "GPT-2: '{}' exists and is not a folder", dir);
    fill(dir);
    return;
  }
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    LR_CHECK(!ec, "GPT-2: cannot create folder '{}': {}", target.parent_path().string(), ec.message());
  }
  // The same temporary name pattern as io's atomic files (<name>.tmp.<pid>.<n>), which run folders clean up.
  static int counter = 0;
  const fs::path tmp = target.string() + detail::format(".tmp.{}.{}", static_cast<long long>(::getpid()), ++counter);
  fs::create_directory(tmp, ec);
  LR_CHECK(!ec, "GPT-2: cannot create folder '{}': {}", tmp.string(), ec.message());
  try {
    fill(tmp.string());
    fs::rename(tmp, target, ec);
    LR_CHECK(!ec, "GPT-2: cannot rename '{}' to '{}': {}", tmp.string(), dir, ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

void save_hf_checkpoint(const Gpt2& model, const std::string& dir) {
  // Checked and converted first: a model that cannot be saved leaves no folder behind.
  for (const auto& [name, t] : model.named_parameters())
    LR_CHECK(name.find("base_layer") == std::string::npos && name.find("lora_") == std::string::npos,
             "GPT-2: save_hf_checkpoint needs a plain model, found '{}' (fold the adapters in with "
             "nn::merge_and_unload, or save them with save_peft_adapter)",
             name);
  const std::map<std::string, Tensor> hf = state_to_hf(model.state_dict(), model.config());
  write_folder(dir, [&](const std::string& folder) {
    io::save_safetensors((fs::path(folder) / kWeightsFile).string(), hf, {{"format", "pt"}});
    io::write_file_atomic((fs::path(folder) / kConfigFile).string(), model.config().to_json());
  });
}

void save_checkpoint(const Gpt2& model, const std::string& dir, const std::map<std::string, std::string>& metadata) {
  std::map<std::string, Tensor> state = model.state_dict();
  LR_CHECK(state.count("h.0.attn.query.kernel") && state.count("h.0.mlp.fc.kernel"),
           "GPT-2: save_checkpoint needs a plain model; this one has adapters injected (merge them, or save them "
           "with nn::save_lora_adapter)");
  for (const auto& [name, t] : state)
    LR_CHECK(name.find("base_layer") == std::string::npos && name.find("lora_") == std::string::npos,
             "GPT-2: save_checkpoint needs a plain model, found '{}' (save adapters with nn::save_lora_adapter)", name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  LR_CHECK(!ec, "GPT-2: cannot create folder '{}': {}", dir, ec.message());
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = kFormat;
  meta["config"] = model.config().to_json();
  io::save_safetensors((fs::path(dir) / kWeightsFile).string(), state, meta);
  io::write_file_atomic((fs::path(dir) / kConfigFile).string(), model.config().to_json());
}

std::unique_ptr<Gpt2> load_checkpoint(const std::string& path) {
  auto [dir, file] = resolve(path, "checkpoint");
  io::SafetensorsFile f = io::load_safetensors(file.string());
  LR_CHECK(detect(f, file.string()) == Format::Ours,
           "GPT-2: {} is a Hugging Face checkpoint, not ours (use load_any or load_hf_checkpoint)", file.string());
  return build(f, dir, file.string());
}

std::unique_ptr<Gpt2> load_any(const std::string& path) {
  auto [dir, file] = resolve(path, "checkpoint");
  io::SafetensorsFile f = io::load_safetensors(file.string());
  return build(f, dir, file.string());
}

}  // namespace lowrank::models::gpt2
