// GPT-2 configs and checkpoints that lie: sizes that would overflow or allocate terabytes, deep
// JSON, and a checkpoint whose config promises thousands of layers the file does not hold.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/test_util.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2_test_util.h"

using namespace lowrank;
using namespace lowrank::models::gpt2;
using lowrank::testing::throws_with;
namespace fs = std::filesystem;

namespace {

std::string config_with(const std::string& key, const nlohmann::json& value) {
  nlohmann::json j = nlohmann::json::parse(gpt2_test::tiny_config().to_json());
  j[key] = value;
  if (key == "n_ctx") j.erase("n_positions");  // n_positions would win
  return j.dump();
}

struct TempDir {
  TempDir() {
    path = fs::temp_directory_path() / ("lowrank_gpt2_hostile_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
};

}  // namespace

TEST(Gpt2HostileConfig, SizesOutsideSaneBoundsNameTheField) {
  // n_ctx 2^62 with n_embd 1 wrapped the byte count to 0 and weight init wrote past the buffer.
  EXPECT_TRUE(throws_with([] { Config::from_json(config_with("n_ctx", int64_t{1} << 62)); },
                          {"n_ctx (n_positions) must be in 1..1048576", "4611686018427387904"}));
  // 2^31 reached the random generator as a negative count.
  EXPECT_TRUE(throws_with([] { Config::from_json(config_with("n_embd", int64_t{1} << 31)); },
                          {"n_embd must be in 1..65536", "2147483648"}));
  EXPECT_TRUE(
      throws_with([] { Config::from_json(config_with("n_layer", 1000000000)); }, {"n_layer must be in 1..1024"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(config_with("vocab_size", uint64_t{1} << 63)); },
                          {"\"vocab_size\" is 9223372036854775808, far out of range"}));
  EXPECT_TRUE(throws_with([] { Config::from_json(config_with("n_head", 3)); }, {"multiple of n_head 3"}));
  // Each within bounds, together too many parameters to allocate.
  nlohmann::json j = nlohmann::json::parse(config_with("n_layer", 1024));
  j["n_embd"] = 65536, j["n_head"] = 64;
  EXPECT_TRUE(throws_with([&] { Config::from_json(j.dump()); }, {"parameters, more than the"}));
}

TEST(Gpt2HostileConfig, FileErrorsNameTheFile) {
  TempDir dir;
  const std::string path = (dir.path / "config.json").string();
  std::ofstream(path) << config_with("n_embd", int64_t{1} << 31);
  EXPECT_TRUE(throws_with([&] { Config::from_json_file(path); }, {path, "n_embd"}));
  std::ofstream(path, std::ios::trunc) << "{\"n_layer\":" + std::string(100000, '[') + "1" + std::string(100000, ']');
  EXPECT_TRUE(throws_with([&] { Config::from_json_file(path); }, {path, "nested deeper than 64"}));
}

TEST(Gpt2HostileCheckpoint, ConfigPromisingMoreLayersIsRefusedBeforeBuilding) {
  TempDir dir;
  Gpt2 model(gpt2_test::tiny_config());
  save_checkpoint(model, dir.path.string());
  const std::string file = (dir.path / "model.safetensors").string();
  io::SafetensorsFile f = io::load_safetensors(file);
  // 1000 layers 4096 wide: a model of 800 GB, which must never be allocated to find out.
  Config lie = gpt2_test::tiny_config();
  lie.n_layer = 1000, lie.n_embd = 4096, lie.n_head = 16;
  f.metadata["config"] = lie.to_json();
  io::save_safetensors(file, f.tensors, f.metadata);
  std::string msg;
  try {
    load_checkpoint(dir.path.string());
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("does not fit the model (n_layer 1000"), std::string::npos) << msg;
  // The first few problems, then the count: 4 + 2·16 tensors mis-shaped, 998·16 missing.
  EXPECT_NE(msg.find("16004 problems: tensor 'wte.embeddings' is [50, 16] in the file, the model expects [50, 4096]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("; and 15992 more"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 2100u);
}

TEST(Gpt2HostileCheckpoint, IntegerWeightsAreRefusedByName) {
  TempDir dir;
  Gpt2 model(gpt2_test::tiny_config());
  save_checkpoint(model, dir.path.string());
  const std::string file = (dir.path / "model.safetensors").string();
  io::SafetensorsFile f = io::load_safetensors(file);
  f.tensors.at("ln_f.gamma") = Tensor::zeros(f.tensors.at("ln_f.gamma").shape(), DType::I32);
  io::save_safetensors(file, f.tensors, f.metadata);
  EXPECT_TRUE(throws_with([&] { load_checkpoint(dir.path.string()); }, {"ln_f.gamma", "i32"}));
}
