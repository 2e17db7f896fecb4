// `lowrank similarity FILE1 FILE2`: the LoRA paper's normalized subspace similarity φ(i, j)
// between the adapter matrices of two safetensors files (ours or PEFT's), as a table, a JSON
// object, and with --out a heatmap PNG and a JSON file.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "analysis/plot.h"
#include "analysis/similarity.h"
#include "core/io/safetensors.h"
#include "tools/cli/command.h"
#include "tools/cli/flags.h"

namespace lowrank::cli {
namespace {

namespace fs = std::filesystem;
using analysis::AdapterSide;

struct SimilarityFlags {
  std::string file1, file2, tensor, out;
  bool left = false, json = false;
};

// PEFT saves a wrapped model's adapters under "base_model.model."; the module path after it is
// the name both kinds of file share.
constexpr const char* kPeftPrefix = "base_model.model.";

std::string module_key(const std::string& name) {
  const std::string prefix = kPeftPrefix;
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

std::string joined(const std::vector<std::string>& names, size_t max_names = 12) {
  std::string s;
  for (size_t k = 0; k < names.size() && k < max_names; ++k) s += (k ? ", " : "") + names[k];
  if (names.size() > max_names) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return names.empty() ? "nothing" : s;
}

std::vector<std::string> names_of(const io::SafetensorsFile& f) {
  std::vector<std::string> v;
  for (const auto& [name, t] : f.tensors) v.push_back(name);
  return v;
}

// The tensor --tensor NAME means in `f`: NAME itself, or NAME with or without PEFT's prefix, or
// the adapter matrix of module NAME (NAME.lora_A.weight, or .lora_B.weight with --left).
std::string find_named(const io::SafetensorsFile& f, const std::string& path, const std::string& name,
                       const std::string& suffix) {
  if (f.tensors.count(name)) return name;
  std::vector<std::string> hits;
  for (const auto& [key, t] : f.tensors)
    if (module_key(key) == module_key(name) || module_key(key) == module_key(name) + suffix) hits.push_back(key);
  LR_CHECK(!hits.empty(), "similarity: {} has no tensor '{}' (nor '{}{}'); it holds {}", path, name, name, suffix,
           joined(names_of(f)));
  LR_CHECK(hits.size() == 1, "similarity: '{}' is ambiguous in {}: {}", name, path, joined(hits));
  return hits[0];
}

// module path -> tensor name, for every adapter matrix on the chosen side.
std::map<std::string, std::string> adapters_in(const io::SafetensorsFile& f, const std::string& suffix) {
  std::map<std::string, std::string> out;
  for (const auto& [key, t] : f.tensors) {
    const std::string m = module_key(key);
    if (m.size() > suffix.size() && m.compare(m.size() - suffix.size(), suffix.size(), suffix) == 0)
      out[m.substr(0, m.size() - suffix.size())] = key;
  }
  return out;
}

// Without --tensor: the one adapter both files hold. Anything else is an error that lists names.
std::pair<std::string, std::string> pair_adapters(const io::SafetensorsFile& f1, const io::SafetensorsFile& f2,
                                                  const SimilarityFlags& o, const std::string& suffix) {
  auto a1 = adapters_in(f1, suffix), a2 = adapters_in(f2, suffix);
  LR_CHECK(!a1.empty(), "similarity: {} holds no '*{}' tensors (it holds {}); name one with --tensor", o.file1, suffix,
           joined(names_of(f1)));
  LR_CHECK(!a2.empty(), "similarity: {} holds no '*{}' tensors (it holds {}); name one with --tensor", o.file2, suffix,
           joined(names_of(f2)));
  std::vector<std::string> m1, m2, common;
  for (const auto& [m, k] : a1) m1.push_back(m);
  for (const auto& [m, k] : a2) m2.push_back(m);
  for (const auto& m : m1)
    if (a2.count(m)) common.push_back(m);
  LR_CHECK(!common.empty(), "similarity: mismatched adapter names: {} has {} and {} has {}; pick one with --tensor",
           o.file1, joined(m1), o.file2, joined(m2));
  LR_CHECK(common.size() == 1, "similarity: ambiguous: both files adapt {} modules ({}); pick one with --tensor",
           common.size(), joined(common));
  return {a1[common[0]], a2[common[0]]};
}

// PEFT's file name inside an adapter folder.
constexpr const char* kAdapterFile = "adapter_model.safetensors";

// FILE or an adapter folder (its adapter_model.safetensors).
std::string adapter_file(const std::string& path) {
  if (!fs::is_directory(path)) return path;
  const fs::path f = fs::path(path) / kAdapterFile;
  LR_CHECK(fs::is_regular_file(f), "similarity: the folder {} holds no {}", path, kAdapterFile);
  return f.string();
}

// How figures and JSON name an input: the run's folder for an adapter folder or its
// adapter_model.safetensors (lora_r8_s0), else the file's name.
std::string run_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  if (fs::is_directory(p) || p.filename() == kAdapterFile) {
    const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
    const fs::path abs = fs::absolute(dir).lexically_normal();
    return (abs.has_filename() ? abs : abs.parent_path()).filename().string();
  }
  return p.filename().string();
}

Tensor checked_matrix(const io::SafetensorsFile& f, const std::string& path, const std::string& name) {
  const Tensor& t = f.tensors.at(name);
  LR_CHECK(t.dim() == 2, "similarity: {} '{}' has shape {}, not a 2-D matrix", path, name, t.shape());
  LR_CHECK(is_floating(t.dtype()), "similarity: {} '{}' is {}, not a float matrix", path, name, dtype_name(t.dtype()));
  LR_CHECK(t.numel() > 0, "similarity: {} '{}' is empty ({})", path, name, t.shape());
  return t;
}

void print_table(const nlohmann::json& j, const analysis::SimilarityGrid& g) {
  std::printf("phi(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j), %s singular vectors\n",
              j["side"] == "right" ? "right" : "left");
  std::printf("  i: %s  %s %s\n", j["file1"].get<std::string>().c_str(), j["tensor1"].get<std::string>().c_str(),
              j["shape1"].dump().c_str());
  std::printf("  j: %s  %s %s\n\n", j["file2"].get<std::string>().c_str(), j["tensor2"].get<std::string>().c_str(),
              j["shape2"].dump().c_str());
  std::printf("%5s", "i\\j");
  for (int64_t c = 1; c <= g.cols; ++c) std::printf(" %6lld", static_cast<long long>(c));
  std::printf("\n");
  for (int64_t r = 1; r <= g.rows; ++r) {
    std::printf("%5lld", static_cast<long long>(r));
    for (int64_t c = 1; c <= g.cols; ++c) std::printf(" %6.3f", g.at(r, c));
    std::printf("\n");
  }
}

int run_similarity(const SimilarityFlags& o) {
  const AdapterSide side = o.left ? AdapterSide::LeftOfB : AdapterSide::RightOfA;
  const std::string suffix = o.left ? ".lora_B.weight" : ".lora_A.weight";
  const io::SafetensorsFile f1 = io::load_safetensors(adapter_file(o.file1)),
                            f2 = io::load_safetensors(adapter_file(o.file2));
  const std::string name1 = run_name(o.file1), name2 = run_name(o.file2);
  std::string n1, n2;
  if (!o.tensor.empty()) {
    n1 = find_named(f1, o.file1, o.tensor, suffix);
    n2 = find_named(f2, o.file2, o.tensor, suffix);
  } else {
    std::tie(n1, n2) = pair_adapters(f1, f2, o, suffix);
  }
  const Tensor m1 = checked_matrix(f1, o.file1, n1), m2 = checked_matrix(f2, o.file2, n2);
  const int axis = o.left ? 0 : 1;
  LR_CHECK(m1.size(axis) == m2.size(axis),
           "similarity: {} '{}' {} and {} '{}' {} do not share their {} size ({} vs {}), so their {} singular "
           "vectors live in different spaces",
           o.file1, n1, m1.shape(), o.file2, n2, m2.shape(), o.left ? "row (output)" : "column (input)", m1.size(axis),
           m2.size(axis), o.left ? "left" : "right");
  // f64 on the CPU: φ close to 1 needs more digits than f32 keeps, and adapters are small.
  const analysis::SimilarityGrid g = analysis::adapter_similarity(m1.to(DType::F64), m2.to(DType::F64), side);

  nlohmann::json j = g;
  j["file1"] = o.file1, j["file2"] = o.file2, j["tensor1"] = n1, j["tensor2"] = n2;
  j["name1"] = name1, j["name2"] = name2;
  j["shape1"] = m1.shape(), j["shape2"] = m2.shape();
  j["side"] = o.left ? "left" : "right";
  if (!o.out.empty()) {
    std::error_code ec;
    fs::create_directories(o.out, ec);
    LR_CHECK(fs::is_directory(o.out), "similarity: cannot create the output folder '{}'", o.out);
    const std::string png = (fs::path(o.out) / "similarity.png").string();
    const std::string json_path = (fs::path(o.out) / "similarity.json").string();
    analysis::HeatmapOptions h;
    h.title = std::string("φ(") + (o.left ? "B1, B2" : "A1, A2") + ", i, j)";
    h.y_label = "i  (" + name1 + ", r = " + std::to_string(g.rows) + ")";
    h.x_label = "j  (" + name2 + ", r = " + std::to_string(g.cols) + ")";
    h.colorbar_label = "φ";
    h.vmin = 0.0, h.vmax = 1.0;
    analysis::plot_heatmap(png, g.values, g.rows, g.cols, h);
    j["outputs"] = {{"png", png}, {"json", json_path}};
    io::write_file_atomic(json_path, j.dump(1) + "\n");
  }
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    print_table(j, g);
    if (!o.out.empty())
      std::printf("\nwrote %s and %s\n", j["outputs"]["png"].get<std::string>().c_str(),
                  j["outputs"]["json"].get<std::string>().c_str());
  }
  return kExitOk;
}

}  // namespace

RunFn register_similarity(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "similarity",
      "normalized subspace similarity phi(i, j) between the LoRA adapters of two safetensors files (LoRA paper, "
      "section 7.2): right singular vectors of A by default, left singular vectors of B with --left");
  auto o = std::make_shared<SimilarityFlags>();
  // Existence is checked when loading (exit 1 with the file's name), not by the parser (exit 2).
  sub->add_option("FILE1", o->file1,
                  "first safetensors file or adapter folder (its adapter_model.safetensors): rows i of the grid")
      ->required();
  sub->add_option("FILE2", o->file2, "second safetensors file or adapter folder: columns j of the grid")->required();
  sub->add_option("--tensor", o->tensor,
                  "tensor or module to compare in both files (e.g. fc2 or fc2.lora_A.weight); default: the one "
                  "adapter both files hold");
  sub->add_flag("--left", o->left, "use the left singular vectors of the lora_B matrices");
  sub->add_option("--out", o->out, "folder for similarity.png (heatmap) and similarity.json");
  add_json_flag(sub, o->json);
  return [o]() { return run_similarity(*o); };
}

}  // namespace lowrank::cli
