// GPT-2 checkpoints: our format round trip, HF layout both ways (prefix or not, lm_head,
// mask buffers, f16), and refusals of missing, extra, mis-shaped, lying and truncated files.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd.h"
#include "core/io/half.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/gpt2/checkpoint.h"
#include "nn/lora.h"
#include "support/compare.h"
#include "support/errors.h"
#include "support/files.h"
#include "support/gpt2.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
using lowrank::test::TempDir;
using lowrank::test::throws_with;
namespace fs = std::filesystem;

namespace {

Tensor logits_of(Gpt2& m, const Tensor& ids) {
  NoGradGuard ng;
  m.eval();
  return m.forward(ids);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// An HF folder for `m`: tensors as state_to_hf gives them, with `edit` applied, and config.json.
template <class Edit>
void write_hf(const Gpt2& m, const std::string& dir, Edit edit) {
  fs::create_directories(dir);
  auto hf = state_to_hf(m.state_dict(), m.config());
  edit(hf);
  io::save_safetensors(dir + "/model.safetensors", hf);
  write_text(dir + "/config.json", m.config().to_json());
}

}  // namespace

TEST(Gpt2Checkpoint, OurFormatRoundTrip) {
  TempDir tmp;
  nn::Generator gen(7);
  Gpt2 a(test::tiny_config(0.1), gen);
  save_checkpoint(a, tmp.path().string(), {{"step", "12"}});
  EXPECT_TRUE(fs::exists(tmp.file("config.json")));
  auto file = io::load_safetensors(tmp.file("model.safetensors"));
  EXPECT_EQ(file.metadata.at("format"), "lowrank-gpt2");
  EXPECT_EQ(file.metadata.at("step"), "12");
  EXPECT_TRUE(file.tensors.count("h.1.attn.query.kernel"));

  Tensor ids = test::random_ids(2, 7, 50, 1);
  const Tensor want = logits_of(a, ids);
  for (const std::string& p : {tmp.path().string(), tmp.file("model.safetensors")}) {
    auto b = load_checkpoint(p);
    EXPECT_EQ(b->config(), a.config());
    EXPECT_TRUE(test::bitwise_equal(logits_of(*b, ids), want)) << p;
    auto c = load_any(p);
    EXPECT_TRUE(test::bitwise_equal(logits_of(*c, ids), want)) << p;
  }
  // The file alone carries its config: config.json is not needed.
  fs::remove(tmp.file("config.json"));
  EXPECT_EQ(load_any(tmp.file("model.safetensors"))->config(), a.config());
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(tmp.path().string()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Gpt2Checkpoint, RefusesLoraInjectedModel) {
  TempDir tmp;
  Gpt2 a(test::tiny_config());
  nn::LoraConfig lc;
  lc.r = 2;
  nn::inject_lora(a, "h.0.attn.query", lc);
  EXPECT_TRUE(throws_with([&] { save_checkpoint(a, tmp.path().string()); }, {"plain model", "save_lora_adapter"}));
}

TEST(Gpt2Checkpoint, HfLayoutWithAndWithoutPrefix) {
  TempDir tmp;
  nn::Generator gen(8);
  Gpt2 a(test::tiny_config(), gen);
  Tensor ids = test::random_ids(2, 9, 50, 2);
  const Tensor want = logits_of(a, ids);
  // Conv1D layout: c_attn [C, 3C], MLP weights [in, out].
  auto hf = state_to_hf(a.state_dict(), a.config());
  EXPECT_EQ(hf.at("h.0.attn.c_attn.weight").shape(), (Shape{16, 48}));
  EXPECT_EQ(hf.at("h.0.mlp.c_fc.weight").shape(), (Shape{16, 64}));
  EXPECT_EQ(hf.at("h.0.mlp.c_proj.weight").shape(), (Shape{64, 16}));
  // Column 16 + 3 of c_attn is the key's head 0, lane 3 for input row 5.
  EXPECT_EQ(hf.at("h.1.attn.c_attn.weight").select(0, 5).select(0, 19).item(),
            a.parameter("h.1.attn.key.kernel").select(0, 5).select(0, 0).select(0, 3).item());

  write_hf(a, tmp.file("plain"), [](auto&) {});
  write_hf(a, tmp.file("prefixed"), [](std::map<std::string, Tensor>& t) {
    std::map<std::string, Tensor> p;
    for (auto& [n, v] : t) p["transformer." + n] = v;
    p["lm_head.weight"] = t.at("wte.weight").clone();  // tied: equal to wte, accepted
    p["transformer.h.0.attn.bias"] = Tensor::ones({1, 1, 16, 16});
    p["transformer.h.1.attn.masked_bias"] = Tensor::scalar(-1e4);
    t = p;
  });
  for (const char* sub : {"plain", "prefixed"}) {
    auto b = load_any(tmp.file(sub));
    EXPECT_TRUE(test::bitwise_equal(logits_of(*b, ids), want)) << sub;
    Gpt2 c(a.config());
    load_hf_checkpoint(c, tmp.file(sub) + "/model.safetensors");
    EXPECT_TRUE(test::bitwise_equal(logits_of(c, ids), want)) << sub;
  }
  // save_hf_checkpoint writes what load_any reads back.
  save_hf_checkpoint(a, tmp.file("exported"));
  auto e = io::load_safetensors(tmp.file("exported/model.safetensors"));
  EXPECT_TRUE(e.tensors.count("h.0.attn.c_attn.weight"));
  EXPECT_TRUE(test::bitwise_equal(logits_of(*load_any(tmp.file("exported")), ids), want));
  EXPECT_EQ(read_hf_config(tmp.file("exported")).n_embd, 16);
}

TEST(Gpt2Checkpoint, HfRefusesMissingExtraMisshapedAndUntiedHead) {
  TempDir tmp;
  Gpt2 a(test::tiny_config());
  write_hf(a, tmp.file("missing"), [](auto& t) { t.erase("h.1.mlp.c_fc.bias"); });
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("missing")); }, {"missing tensor 'h.1.mlp.c_fc.bias'", "[64]"}));
  write_hf(a, tmp.file("extra"), [](auto& t) { t["h.0.attn.rotary"] = Tensor::zeros({3}); });
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("extra")); }, {"unexpected tensor 'h.0.attn.rotary'"}));
  write_hf(a, tmp.file("shape"), [](auto& t) { t["h.0.attn.c_attn.weight"] = Tensor::zeros({48, 16}); });
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("shape")); },
                          {"'h.0.attn.c_attn.weight'", "[48, 16] in the file", "expects [16, 48]"}));
  write_hf(a, tmp.file("head"), [](auto& t) { t["lm_head.weight"] = Tensor::zeros({50, 16}); });
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("head")); }, {"lm_head.weight differs from wte.weight"}));
  // A config that disagrees with the weights: the shapes name it.
  write_hf(a, tmp.file("config"), [](auto&) {});
  Config wrong = a.config();
  wrong.vocab_size = 60;
  write_text(tmp.file("config/config.json"), wrong.to_json());
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("config")); }, {"'wte.weight'", "[50, 16] in the file", "[60, 16]"}));
  // HF weights with no config.json.
  write_hf(a, tmp.file("noconfig"), [](auto&) {});
  fs::remove(tmp.file("noconfig/config.json"));
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("noconfig")); }, {"config.json"}));
  // Not GPT-2 at all, not there, a folder without weights.
  io::save_safetensors(tmp.file("other.safetensors"), {{"layers.1.kernel", Tensor::zeros({2, 2})}});
  EXPECT_TRUE(
      throws_with([&] { load_any(tmp.file("other.safetensors")); }, {"not a GPT-2 checkpoint", "layers.1.kernel"}));
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("nothing")); }, {"does not exist"}));
  fs::create_directories(tmp.file("empty"));
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("empty")); }, {"no model.safetensors"}));
  // Our loader refuses an HF file (and says what to use).
  EXPECT_TRUE(throws_with([&] { load_checkpoint(tmp.file("missing")); }, {"Hugging Face", "load_any"}));
  save_checkpoint(a, tmp.file("ours"));
  Gpt2 b(a.config());
  EXPECT_TRUE(throws_with([&] { load_hf_checkpoint(b, tmp.file("ours")); }, {"lowrank checkpoint", "load_checkpoint"}));
}

TEST(Gpt2Checkpoint, TruncatedAndLyingFiles) {
  TempDir tmp;
  Gpt2 a(test::tiny_config());
  save_checkpoint(a, tmp.file("ok"));
  std::string bytes;
  {
    std::ifstream in(tmp.file("ok/model.safetensors"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  fs::create_directories(tmp.file("trunc"));
  write_text(tmp.file("trunc/model.safetensors"), bytes.substr(0, bytes.size() - 100));
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("trunc")); }, {"trunc/model.safetensors"}));
  // A header length far beyond the file.
  std::string lying = bytes;
  lying[5] = '\x7f';
  fs::create_directories(tmp.file("lying"));
  write_text(tmp.file("lying/model.safetensors"), lying);
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("lying")); }, {"lying/model.safetensors"}));
  // A header that claims a shape its bytes do not cover.
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  h["ln_f.beta"]["shape"] = {17};
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t hn = header.size();
  std::string forged(reinterpret_cast<const char*>(&hn), 8);
  forged += header + bytes.substr(8 + n);
  fs::create_directories(tmp.file("forged"));
  write_text(tmp.file("forged/model.safetensors"), forged);
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("forged")); }, {"ln_f.beta"}));
  // A config in the metadata that is not JSON.
  io::SafetensorsFile f = io::load_safetensors(tmp.file("ok/model.safetensors"));
  f.metadata["config"] = "{not json";
  fs::create_directories(tmp.file("badmeta"));
  io::save_safetensors(tmp.file("badmeta/model.safetensors"), f.tensors, f.metadata);
  EXPECT_TRUE(throws_with([&] { load_any(tmp.file("badmeta")); }, {"metadata \"config\"", "not valid JSON"}));
}

TEST(Gpt2Checkpoint, HalfPrecisionHfFile) {
  // HF also ships f16 weights; the reader widens them to f32. Written by hand: F16 bytes.
  TempDir tmp;
  Gpt2 a(test::tiny_config());
  auto hf = state_to_hf(a.state_dict(), a.config());
  nlohmann::json header;
  std::string data;
  for (const auto& [name, t] : hf) {
    const std::vector<float> v = t.contiguous().to_vector<float>();
    const size_t begin = data.size();
    for (float x : v) {
      uint16_t h = io::f32_to_f16(x);
      data.append(reinterpret_cast<const char*>(&h), 2);
    }
    header[name] = {{"dtype", "F16"}, {"shape", t.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string hs = header.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');
  uint64_t hn = hs.size();
  fs::create_directories(tmp.file("f16"));
  write_text(tmp.file("f16/model.safetensors"), std::string(reinterpret_cast<const char*>(&hn), 8) + hs + data);
  write_text(tmp.file("f16/config.json"), a.config().to_json());
  auto b = load_any(tmp.file("f16"));
  // Each weight rounded to f16 (11 significant bits): logits move by ~1e-3 relative at most.
  Tensor ids = test::random_ids(1, 5, 50, 3);
  EXPECT_TRUE(test::all_close(logits_of(*b, ids), logits_of(a, ids), {1e-2, 1e-3}, "f16 vs f32"));
  const float w = a.parameter("h.0.mlp.fc.kernel").select(0, 3).select(0, 2).item();
  EXPECT_EQ(b->parameter("h.0.mlp.fc.kernel").select(0, 3).select(0, 2).item(), io::f16_to_f32(io::f32_to_f16(w)));
}
