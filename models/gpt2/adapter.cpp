// GPT-2 LoRA injection and PEFT's adapter files for GPT2LMHeadModel, both ways (see adapter.h for
// how q/k/v adapters map onto PEFT's fused c_attn).
#include "models/gpt2/adapter.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/checkpoint.h"

namespace lowrank::models::gpt2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPeftPrefix = "base_model.model.transformer.";
constexpr const char* kMetadataKey = "lowrank";  // our own spec, in the safetensors metadata PEFT ignores
constexpr size_t kMaxListed = 6;                 // problems named in one message; the rest are counted
const char* const kQkv[] = {"query", "key", "value"};

// PEFT's modules of a block: name (as in target_modules), input and output widths.
struct HfModule {
  const char* name;
  int64_t in_mult, out_mult;  // times n_embd
};
const HfModule kHfModules[] = {{"attn.c_attn", 1, 3}, {"attn.c_proj", 1, 1}, {"mlp.c_fc", 1, 4}, {"mlp.c_proj", 4, 1}};

std::string peft_key(int64_t block, const std::string& module, const char* ab) {
  return std::string(kPeftPrefix) + "h." + std::to_string(block) + "." + module + ".lora_" + ab + ".weight";
}

// The HF module an (our) target lives in; q, k and v share c_attn.
const char* hf_module_of(const std::string& target) {
  if (target == "out") return "attn.c_proj";
  if (target == "fc") return "mlp.c_fc";
  if (target == "proj") return "mlp.c_proj";
  return "attn.c_attn";
}

int qkv_index(const std::string& target) {
  for (int j = 0; j < 3; ++j)
    if (target == kQkv[j]) return j;
  return -1;
}

// Block index and target name of a path "h.<i>.attn.query"; false for anything else.
bool split_path(const std::string& path, int64_t& block, std::string& target) {
  if (path.rfind("h.", 0) != 0) return false;
  const size_t dot = path.find('.', 2);
  if (dot == std::string::npos) return false;
  try {
    block = std::stoll(path.substr(2, dot - 2));
  } catch (const std::exception&) {
    return false;
  }
  const std::string layer = path.substr(dot + 1);
  for (const char* t : kLoraTargets)
    if (lora_target_layer(t) == layer) {
      target = t;
      return true;
    }
  return false;
}

std::string list_problems(const std::vector<std::string>& problems) {
  std::string s;
  for (size_t i = 0; i < problems.size() && i < kMaxListed; ++i) s += (i ? "; " : "") + problems[i];
  if (problems.size() > kMaxListed)
    s += detail::format("; and {} more ({} in all)", problems.size() - kMaxListed, problems.size());
  return s;
}

double scale_for(double alpha, int64_t r, bool rslora) {
  return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}
// The alpha that gives `scale` at rank r.
double alpha_for(double scale, int64_t r, bool rslora) {
  return rslora ? scale * std::sqrt(static_cast<double>(r)) : scale * static_cast<double>(r);
}

json schedule_json(const nn::BaseScaleSchedule& s) {
  return json{{"schedule", s.name()}, {"start", s.start}, {"target", s.target}, {"steps", s.steps}};
}

}  // namespace

// ---- targets and injection

std::string lora_target_layer(const std::string& target) {
  if (target == "query" || target == "key" || target == "value" || target == "out") return "attn." + target;
  if (target == "fc" || target == "proj") return "mlp." + target;
  LR_FAIL("GPT-2 LoRA: unknown target '{}' (the targets are query, key, value, out, fc, proj)", target);
}

std::vector<std::string> parse_lora_targets(const std::string& csv) {
  std::set<std::string> seen;
  size_t start = 0;
  while (start <= csv.size()) {
    size_t end = csv.find(',', start);
    if (end == std::string::npos) end = csv.size();
    const std::string name = csv.substr(start, end - start);
    lora_target_layer(name);  // throws for an unknown one (an empty one too)
    if (!seen.insert(name).second) LR_FAIL("GPT-2 LoRA: target '{}' is named twice in '{}'", name, csv);
    start = end + 1;
  }
  std::vector<std::string> out;
  for (const char* t : kLoraTargets)
    if (seen.count(t)) out.emplace_back(t);
  return out;
}

std::vector<int64_t> parse_lora_layers(const std::string& text, int64_t n_layer) {
  std::vector<int64_t> all;
  for (int64_t i = 0; i < n_layer; ++i) all.push_back(i);
  if (text.empty() || text == "all") return all;
  std::set<int64_t> chosen;
  auto number = [&](const std::string& s) {
    LR_CHECK(!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos,
             "GPT-2 LoRA: '{}' in --layers '{}' is not a block number (e.g. 0,1,5 or 0-3)", s, text);
    const int64_t v = std::stoll(s);
    LR_CHECK(v < n_layer, "GPT-2 LoRA: block {} in --layers '{}' does not exist: the model has {} blocks (0-{})", v,
             text, n_layer, n_layer - 1);
    return v;
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      chosen.insert(number(item));
    } else {
      const int64_t lo = number(item.substr(0, dash)), hi = number(item.substr(dash + 1));
      LR_CHECK(lo <= hi, "GPT-2 LoRA: range '{}' in --layers runs backwards", item);
      for (int64_t i = lo; i <= hi; ++i) chosen.insert(i);
    }
    start = end + 1;
  }
  return {chosen.begin(), chosen.end()};
}

std::vector<Gpt2LoraLayer> inject_gpt2_lora(Gpt2& model, const Gpt2LoraSpec& spec) {
  LR_CHECK(gpt2_lora_layers(model).empty(), "GPT-2 LoRA: the model already has adapters");
  LR_CHECK(!spec.targets.empty(), "GPT-2 LoRA: no targets");
  const int64_t n_layer = model.config().n_layer;
  std::vector<int64_t> layers = spec.layers.empty() ? parse_lora_layers("", n_layer) : spec.layers;
  for (int64_t b : layers)
    LR_CHECK(b >= 0 && b < n_layer, "GPT-2 LoRA: block {} does not exist: the model has {} blocks", b, n_layer);
  std::vector<std::string> targets;
  for (const std::string& t : spec.targets) {
    lora_target_layer(t);
    targets.push_back(t);
  }
  std::vector<Gpt2LoraLayer> out;
  uint64_t k = 0;
  for (int64_t b : layers) {
    for (const char* t : kLoraTargets) {
      if (std::find(targets.begin(), targets.end(), t) == targets.end()) continue;
      nn::LoraConfig c = spec.lora;
      c.seed = spec.lora.seed + 0x9E3779B97F4A7C15ull * ++k;  // each layer its own stream
      const std::string path = layer_path(b, lora_target_layer(t));
      out.push_back({path, nn::inject_lora(model, path, c)});
    }
  }
  return out;
}

std::vector<Gpt2LoraLayer> gpt2_lora_layers(const Gpt2& model) {
  std::vector<Gpt2LoraLayer> out;
  for (auto& [path, m] : model.named_modules())
    if (dynamic_cast<nn::LoRA*>(m) != nullptr)
      out.push_back({path, std::dynamic_pointer_cast<nn::LoRA>(model.submodule_ptr(path))});
  return out;
}

// ---- export

PeftAdapter gpt2_adapter_to_peft(const Gpt2& model, const std::string& base_model_name_or_path,
                                 const LoraInitialFactors* pissa_initial) {
  NoGradGuard ng;
  const std::vector<Gpt2LoraLayer> layers = gpt2_lora_layers(model);
  LR_CHECK(!layers.empty(), "GPT-2 LoRA: the model has no adapters to save");
  const nn::LoraConfig& c0 = layers.front().lora->config();
  const bool pissa = c0.init == nn::LoraInit::Pissa;
  LR_CHECK(!pissa || pissa_initial != nullptr,
           "GPT-2 LoRA: '{}' was initialised with PiSSA, so its base is not the original model's; exporting it "
           "for PEFT needs the initial factors (gpt2 lora keeps them)",
           layers.front().path);
  const int64_t r = pissa ? 2 * c0.r : c0.r;  // the rank as exported
  const double scale = c0.scale();
  const double alpha = pissa ? alpha_for(scale, r, c0.use_rslora) : c0.alpha;
  // The factors as exported: A [r, in], B [out, r] (PiSSA: relative to the original W).
  std::map<const nn::LoRA*, std::pair<Tensor, Tensor>> factors;
  for (const Gpt2LoraLayer& l : layers) {
    Tensor a = l.lora->lora_A().to(Device::cpu()), b = l.lora->lora_B().to(Device::cpu());
    if (pissa) {
      auto it = pissa_initial->find(l.path);
      LR_CHECK(it != pissa_initial->end(), "GPT-2 LoRA: no initial PiSSA factors for '{}'", l.path);
      a = concat({a, it->second.first.to(Device::cpu())}, 0);
      b = concat({b, neg(it->second.second.to(Device::cpu()))}, 1);
    }
    factors[l.lora.get()] = {a.contiguous(), b.contiguous()};
  }
  // Per block: the adapter of each target.
  std::map<int64_t, std::map<std::string, const nn::LoRA*>> blocks;
  std::set<std::string> targets;
  for (const Gpt2LoraLayer& l : layers) {
    int64_t b = 0;
    std::string t;
    LR_CHECK(split_path(l.path, b, t), "GPT-2 LoRA: adapter at '{}' is not on a GPT-2 target layer", l.path);
    const nn::LoraConfig& c = l.lora->config();
    LR_CHECK(c.r == c0.r && c.alpha == c0.alpha && c.use_rslora == c0.use_rslora && c.init == c0.init,
             "GPT-2 LoRA: PEFT's config holds one rank and alpha; '{}' has r {} alpha {}, '{}' r {} alpha {}", l.path,
             c.r, c.alpha, layers.front().path, c0.r, c0.alpha);
    LR_CHECK(!l.lora->merged(), "GPT-2 LoRA: adapter '{}' is merged into its layer; unmerge it before saving", l.path);
    blocks[b][t] = l.lora.get();
    targets.insert(t);
  }
  const int64_t C = model.config().n_embd;
  int64_t n_qkv = 0;
  for (const char* t : kQkv) n_qkv += targets.count(t);
  // Every block holds the same targets (PEFT applies target_modules to every chosen block).
  for (auto& [b, m] : blocks)
    LR_CHECK(m.size() == targets.size(), "GPT-2 LoRA: block {} has {} of the {} targets the others have", b, m.size(),
             targets.size());

  PeftAdapter out;
  for (auto& [b, m] : blocks) {
    if (n_qkv > 0) {
      std::vector<Tensor> as;
      Tensor bq = Tensor::zeros({3 * C, n_qkv * r}, m.begin()->second->lora_A().dtype());
      int64_t col = 0;
      for (int j = 0; j < 3; ++j) {
        auto it = m.find(kQkv[j]);
        if (it == m.end()) continue;
        const auto& [fa, fb] = factors.at(it->second);
        as.push_back(fa);
        bq.slice(0, j * C, (j + 1) * C).slice(1, col, col + r).copy_(fb);
        col += r;
      }
      out.tensors[peft_key(b, "attn.c_attn", "A")] = concat(as, 0).contiguous();
      out.tensors[peft_key(b, "attn.c_attn", "B")] = bq;
    }
    for (const char* t : {"out", "fc", "proj"}) {
      auto it = m.find(t);
      if (it == m.end()) continue;
      out.tensors[peft_key(b, hf_module_of(t), "A")] = factors.at(it->second).first;
      out.tensors[peft_key(b, hf_module_of(t), "B")] = factors.at(it->second).second;
    }
  }

  json cfg;
  std::vector<std::string> modules;
  if (n_qkv > 0) modules.push_back("c_attn");
  if (targets.count("out")) modules.push_back("attn.c_proj");
  if (targets.count("fc")) modules.push_back("c_fc");
  if (targets.count("proj")) modules.push_back("mlp.c_proj");
  const bool only_c_attn = modules.size() == 1 && n_qkv > 0;
  const int64_t r_attn = n_qkv * r;
  cfg["peft_type"] = "LORA";
  cfg["task_type"] = "CAUSAL_LM";
  cfg["base_model_name_or_path"] = base_model_name_or_path;
  cfg["r"] = only_c_attn ? r_attn : r;
  cfg["lora_alpha"] = only_c_attn ? alpha_for(scale, r_attn, c0.use_rslora) : alpha;
  cfg["rank_pattern"] = json::object();
  cfg["alpha_pattern"] = json::object();
  if (!only_c_attn && n_qkv > 1) {
    cfg["rank_pattern"]["c_attn"] = r_attn;
    cfg["alpha_pattern"]["c_attn"] = alpha_for(scale, r_attn, c0.use_rslora);
  }
  cfg["target_modules"] = modules;
  cfg["fan_in_fan_out"] = true;
  cfg["use_rslora"] = c0.use_rslora;
  cfg["lora_dropout"] = c0.dropout;
  cfg["bias"] = "none";
  cfg["modules_to_save"] = nullptr;
  cfg["init_lora_weights"] = true;
  cfg["inference_mode"] = true;
  if (static_cast<int64_t>(blocks.size()) != model.config().n_layer) {
    std::vector<int64_t> idx;
    for (auto& [b, m] : blocks) idx.push_back(b);
    cfg["layers_to_transform"] = idx;
    cfg["layers_pattern"] = "h";
  } else {
    cfg["layers_to_transform"] = nullptr;
  }
  out.config_json = cfg.dump(2) + "\n";

  // Ours: what PEFT cannot say (which of q/k/v, the base scale, the init) to get the same layers back.
  std::vector<int64_t> idx;
  for (auto& [b, m] : blocks) idx.push_back(b);
  json mine{{"targets", std::vector<std::string>(targets.begin(), targets.end())},
            {"layers", idx},
            {"r", r},
            {"alpha", alpha},
            {"use_rslora", c0.use_rslora},
            {"dropout", c0.dropout},
            {"init", pissa ? "pissa, converted to a LoRA of the original weights" : nn::lora_init_name(c0.init)},
            {"base_scale", schedule_json(c0.base_scale)},
            {"base_scale_now", layers.front().lora->base_scale()},
            {"schedule_step", layers.front().lora->schedule_step()},
            {"base", {{"n_layer", model.config().n_layer}, {"n_embd", model.config().n_embd}}}};
  out.metadata = {{"format", "pt"}, {kMetadataKey, mine.dump()}};
  return out;
}

void save_peft_adapter(const Gpt2& model, const std::string& dir, const std::string& base_model_name_or_path,
                       const LoraInitialFactors* pissa_initial) {
  const PeftAdapter a =
      gpt2_adapter_to_peft(model, base_model_name_or_path, pissa_initial);  // before any file is touched
  write_folder(dir, [&](const std::string& folder) {
    io::save_safetensors((fs::path(folder) / kAdapterWeightsFile).string(), a.tensors, a.metadata);
    io::write_file_atomic((fs::path(folder) / kAdapterConfigFile).string(), a.config_json);
  });
}

// ---- import

PeftAdapter read_peft_adapter(const std::string& path) {
  std::error_code ec;
  fs::path dir(path);
  if (!fs::is_directory(dir, ec)) dir = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  LR_CHECK(fs::is_directory(dir, ec), "GPT-2 LoRA: no adapter folder '{}'", path);
  const fs::path w = dir / kAdapterWeightsFile, c = dir / kAdapterConfigFile;
  LR_CHECK(fs::exists(w, ec), "GPT-2 LoRA: '{}' holds no {} (a PEFT adapter folder has it and {})", dir.string(),
           kAdapterWeightsFile, kAdapterConfigFile);
  LR_CHECK(fs::exists(c, ec), "GPT-2 LoRA: '{}' holds no {} (PEFT writes it beside {})", dir.string(),
           kAdapterConfigFile, kAdapterWeightsFile);
  PeftAdapter a;
  io::SafetensorsFile f = io::load_safetensors(w.string());
  a.tensors = std::move(f.tensors);
  a.metadata = std::move(f.metadata);
  std::ifstream in(c);
  LR_CHECK(in.good(), "GPT-2 LoRA: cannot read {}", c.string());
  a.config_json.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return a;
}

namespace {

// What adapter_config.json says, checked.
struct PeftConfig {
  int64_t r = 8;
  double alpha = 8;
  bool rslora = false;
  double dropout = 0;
  std::map<std::string, int64_t> rank_pattern;
  std::map<std::string, double> alpha_pattern;
  std::set<std::string> modules;  // of kHfModules
  std::vector<int64_t> layers;    // empty: all
};

PeftConfig parse_peft_config(const std::string& text, const std::string& source) {
  PeftConfig p;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    LR_FAIL("GPT-2 LoRA: {}: {} is not JSON: {}", source, kAdapterConfigFile, e.what());
  }
  auto fail = [&](const std::string& what) {
    throw Error("GPT-2 LoRA: " + source + ": " + kAdapterConfigFile + ": " + what);
  };
  if (!j.is_object()) fail("not a JSON object");
  try {
    const std::string type = j.value("peft_type", std::string("LORA"));
    if (type != "LORA") fail("peft_type is '" + type + "'; only LORA adapters are read");
    if (j.value("use_dora", false)) fail("use_dora is true; DoRA adapters are not read");
    if (j.contains("bias") && !j["bias"].is_null() && j["bias"] != "none")
      fail("bias is " + j["bias"].dump() + "; only bias \"none\" is read (no trained biases)");
    if (j.contains("modules_to_save") && !j["modules_to_save"].is_null() && !j["modules_to_save"].empty())
      fail("modules_to_save " + j["modules_to_save"].dump() + " is not read (whole trained modules)");
    p.r = j.at("r").get<int64_t>();
    if (p.r < 1) fail(detail::format("r must be >= 1, got {}", p.r));
    p.alpha = j.contains("lora_alpha") ? j.at("lora_alpha").get<double>() : 8.0;
    if (!(p.alpha > 0 && std::isfinite(p.alpha))) fail(detail::format("lora_alpha must be positive, got {}", p.alpha));
    p.rslora = j.value("use_rslora", false);
    if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) p.dropout = j["lora_dropout"].get<double>();
    if (j.contains("rank_pattern") && j["rank_pattern"].is_object())
      for (auto& [k, v] : j["rank_pattern"].items()) p.rank_pattern[k] = v.get<int64_t>();
    if (j.contains("alpha_pattern") && j["alpha_pattern"].is_object())
      for (auto& [k, v] : j["alpha_pattern"].items()) p.alpha_pattern[k] = v.get<double>();
    const json& tm = j.at("target_modules");
    std::vector<std::string> names;
    if (tm.is_string())
      names.push_back(tm.get<std::string>());
    else
      names = tm.get<std::vector<std::string>>();
    for (const std::string& n : names) {
      if (n == "c_attn" || n == "attn.c_attn")
        p.modules.insert("attn.c_attn");
      else if (n == "c_fc" || n == "mlp.c_fc")
        p.modules.insert("mlp.c_fc");
      else if (n == "attn.c_proj" || n == "mlp.c_proj")
        p.modules.insert(n);
      else if (n == "c_proj")
        p.modules.insert({"attn.c_proj", "mlp.c_proj"});
      else
        fail("target module '" + n + "' matches no GPT-2 layer (c_attn, attn.c_proj, c_fc, mlp.c_proj)");
    }
    if (p.modules.empty()) fail("target_modules is empty");
    if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null()) {
      const json& l = j["layers_to_transform"];
      if (l.is_number_integer())
        p.layers.push_back(l.get<int64_t>());
      else
        p.layers = l.get<std::vector<int64_t>>();
      std::sort(p.layers.begin(), p.layers.end());
      p.layers.erase(std::unique(p.layers.begin(), p.layers.end()), p.layers.end());
    }
  } catch (const json::exception& e) {
    fail(std::string("a field has the wrong type or is missing: ") + e.what());
  }
  return p;
}

// PEFT's pattern lookup: a key matches a module whose name ends in "." + key (or equals it).
template <class T>
T pattern_value(const std::map<std::string, T>& pattern, const std::string& module, T fallback) {
  for (auto& [k, v] : pattern)
    if (("." + module).ends_with("." + k)) return v;
  return fallback;
}

}  // namespace

std::vector<Gpt2LoraLayer> apply_peft_adapter(Gpt2& model, const PeftAdapter& a, const std::string& source) {
  NoGradGuard ng;
  LR_CHECK(gpt2_lora_layers(model).empty(), "GPT-2 LoRA: the model already has adapters; load {} into a plain model",
           source);
  const PeftConfig p = parse_peft_config(a.config_json, source);
  const Config& mc = model.config();
  const int64_t C = mc.n_embd;

  json mine;
  if (auto it = a.metadata.find(kMetadataKey); it != a.metadata.end()) {
    try {
      mine = json::parse(it->second);
      const int64_t nl = mine.at("base").at("n_layer").get<int64_t>(), ne = mine.at("base").at("n_embd").get<int64_t>();
      if (nl != mc.n_layer || ne != C)
        throw Error(detail::format(
            "GPT-2 LoRA: {} was made for a GPT-2 with {} blocks of width {}; this model has {} blocks of width {}",
            source, nl, ne, mc.n_layer, C));
    } catch (const json::exception& e) {
      LR_FAIL("GPT-2 LoRA: {}: the '{}' metadata is malformed: {}", source, kMetadataKey, e.what());
    }
  }

  std::vector<int64_t> blocks = p.layers;
  if (blocks.empty())
    for (int64_t i = 0; i < mc.n_layer; ++i) blocks.push_back(i);
  if (blocks.back() >= mc.n_layer || blocks.front() < 0)
    throw Error(detail::format(
        "GPT-2 LoRA: {} transforms block {} but this model has {} blocks: it was made for another model size", source,
        blocks.back() >= mc.n_layer ? blocks.back() : blocks.front(), mc.n_layer));

  // Every tensor the config implies, with its shape; then what the file has beyond them.
  std::vector<std::string> problems;
  std::set<std::string> expected;
  std::map<std::string, int64_t> rank_of;
  bool size_mismatch = false;
  for (int64_t b : blocks) {
    for (const HfModule& m : kHfModules) {
      if (!p.modules.count(m.name)) continue;
      const int64_t r = pattern_value(p.rank_pattern, m.name, p.r);
      rank_of[m.name] = r;
      const Shape want_a{r, m.in_mult * C}, want_b{m.out_mult * C, r};
      for (auto [ab, want] : {std::pair<const char*, Shape>{"A", want_a}, {"B", want_b}}) {
        const std::string key = peft_key(b, m.name, ab);
        expected.insert(key);
        auto it = a.tensors.find(key);
        if (it == a.tensors.end()) {
          problems.push_back(detail::format("missing '{}' {}", key, want));
        } else if (it->second.shape() != want) {
          problems.push_back(detail::format("'{}' is {}, this model needs {}", key, it->second.shape(), want));
          if (it->second.dim() == 2 && (it->second.size(ab[0] == 'A' ? 1 : 0) != want[ab[0] == 'A' ? 1 : 0]))
            size_mismatch = true;
        }
      }
    }
  }
  for (auto& [name, t] : a.tensors)
    if (!expected.count(name)) problems.push_back(detail::format("unexpected '{}' {}", name, t.shape()));
  if (!problems.empty())
    throw Error(detail::format("GPT-2 LoRA: {} does not fit this GPT-2 ({} blocks, width {}){}: {}", source, mc.n_layer,
                               C, size_mismatch ? "; it was made for another model size" : "",
                               list_problems(problems)));

  // The q/k/v split of c_attn: ours (from the metadata, when B really is block-diagonal) or shared A.
  std::vector<std::string> qkv_targets;
  int64_t our_r = 0;
  if (!mine.is_null()) {
    try {
      for (const std::string& t : mine.at("targets").get<std::vector<std::string>>())
        if (qkv_index(t) >= 0) qkv_targets.push_back(t);
      our_r = mine.at("r").get<int64_t>();
    } catch (const json::exception& e) {
      LR_FAIL("GPT-2 LoRA: {}: the '{}' metadata is malformed: {}", source, kMetadataKey, e.what());
    }
    std::sort(qkv_targets.begin(), qkv_targets.end(), [](auto& x, auto& y) { return qkv_index(x) < qkv_index(y); });
  }
  bool compact = p.modules.count("attn.c_attn") && !qkv_targets.empty() &&
                 static_cast<int64_t>(qkv_targets.size()) * our_r == rank_of["attn.c_attn"];
  if (compact) {
    // Everything outside the blocks must be zero, or the split would drop part of ΔW.
    for (int64_t b : blocks) {
      Tensor rest = a.tensors.at(peft_key(b, "attn.c_attn", "B")).to(DType::F64).clone();
      for (size_t k = 0; k < qkv_targets.size(); ++k) {
        const int64_t j = qkv_index(qkv_targets[k]), col = static_cast<int64_t>(k) * our_r;
        rest.slice(0, j * C, (j + 1) * C).slice(1, col, col + our_r).zero_();
      }
      if (max(abs(rest)).item() != 0.0) compact = false;
    }
  }

  nn::LoraConfig base;
  base.dropout = p.dropout;
  base.use_rslora = p.rslora;
  if (!mine.is_null()) {
    try {
      const json& bs = mine.at("base_scale");
      base.base_scale.kind = nn::BaseScaleSchedule::parse_kind(bs.at("schedule").get<std::string>());
      base.base_scale.start = bs.at("start").get<double>();
      base.base_scale.target = bs.at("target").get<double>();
      base.base_scale.steps = bs.at("steps").get<int64_t>();
    } catch (const json::exception& e) {
      LR_FAIL("GPT-2 LoRA: {}: the '{}' metadata is malformed: {}", source, kMetadataKey, e.what());
    }
  }
  const int64_t schedule_step = mine.is_null() ? 0 : mine.value("schedule_step", int64_t{0});
  const double our_alpha = mine.is_null() ? 0.0 : mine.value("alpha", 0.0);
  const Device dev = model.device();

  std::vector<Gpt2LoraLayer> out;
  auto add = [&](int64_t b, const std::string& target, const Tensor& A, const Tensor& B, double scale) {
    nn::LoraConfig c = base;
    c.r = A.size(0);
    c.alpha = (our_r == c.r && our_alpha > 0 &&
               std::abs(scale_for(our_alpha, c.r, c.use_rslora) - scale) <= 1e-12 * std::abs(scale))
                  ? our_alpha
                  : alpha_for(scale, c.r, c.use_rslora);
    c.init = nn::LoraInit::Kaiming;
    const std::string path = layer_path(b, lora_target_layer(target));
    std::shared_ptr<nn::LoRA> l;
    try {
      l = nn::inject_lora(model, path, c);
    } catch (const Error& e) {
      throw Error(detail::format("GPT-2 LoRA: {}: {}: {}", source, path, e.what()));
    }
    Tensor la = l->lora_A(), lb = l->lora_B();
    la.copy_(A.to(dev));
    lb.copy_(B.to(dev));
    l->set_schedule_step(schedule_step);
    out.push_back({path, l});
  };
  for (int64_t b : blocks) {
    if (p.modules.count("attn.c_attn")) {
      const int64_t r = rank_of["attn.c_attn"];
      const double s = scale_for(pattern_value(p.alpha_pattern, "attn.c_attn", p.alpha), r, p.rslora);
      const Tensor A = a.tensors.at(peft_key(b, "attn.c_attn", "A")), B = a.tensors.at(peft_key(b, "attn.c_attn", "B"));
      if (compact) {
        for (size_t k = 0; k < qkv_targets.size(); ++k) {
          const int64_t j = qkv_index(qkv_targets[k]), col = static_cast<int64_t>(k) * our_r;
          add(b, qkv_targets[k], A.slice(0, col, col + our_r).contiguous(),
              B.slice(0, j * C, (j + 1) * C).slice(1, col, col + our_r).contiguous(), s);
        }
      } else {
        for (int j = 0; j < 3; ++j) add(b, kQkv[j], A, B.slice(0, j * C, (j + 1) * C).contiguous(), s);
      }
    }
    for (const char* t : {"out", "fc", "proj"}) {
      const std::string m = hf_module_of(t);
      if (!p.modules.count(m)) continue;
      const double alpha = pattern_value(p.alpha_pattern, m, p.alpha);
      add(b, t, a.tensors.at(peft_key(b, m, "A")), a.tensors.at(peft_key(b, m, "B")),
          scale_for(alpha, rank_of[m], p.rslora));
    }
  }
  // PEFT order (c_attn's q/k/v, c_proj, c_fc, c_proj) is our target order already, block by block.
  return out;
}

std::vector<Gpt2LoraLayer> load_peft_adapter(Gpt2& model, const std::string& dir) {
  return apply_peft_adapter(model, read_peft_adapter(dir), dir);
}

}  // namespace lowrank::models::gpt2
