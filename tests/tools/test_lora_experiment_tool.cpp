// `lowrank lora-experiment`, run as a program: a small end-to-end run (every output file, the
// JSON summary, accuracies above chance, adapters that load back) and bad input / bad usage.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "support/tool_runner.h"

using namespace lowrank;
namespace fs = std::filesystem;
using lowrank::test::ToolResult;

namespace {

class LoraExperimentTool : public lowrank::test::ToolTest {
 protected:
  // Small enough for CI: 3000 training samples, one base epoch, two small ranks.
  std::string small_run_flags() const {
    return "lora-experiment --quiet --base-epochs 1 --train-limit 3000 --test-limit 1000 --ranks 2,4 --seeds 0,1 "
           "--out " +
           lowrank::test::shell_quoted((dir_ / "run").string());
  }
};

TEST_F(LoraExperimentTool, SmallRunWritesTableJsonFiguresAndAdapters) {
  ToolResult r = run(small_run_flags() + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);  // exactly one JSON object on stdout
  EXPECT_GT(j["base_acc"].get<double>(), 0.3);      // ten classes: chance is 0.1
  const auto& runs = j["runs"];
  ASSERT_EQ(runs.size(), 4u + 2u + 2u);  // lora rank x seed, compress per rank, svd per rank
  for (const auto& x : runs) {
    EXPECT_GT(x["test_acc"].get<double>(), 0.1) << x.dump();
    if (x["method"] != "svd") {
      const fs::path ad = x["adapter_dir"].get<std::string>();
      EXPECT_TRUE(fs::exists(ad / "adapter_config.json"));
      io::SafetensorsFile f = io::load_safetensors((ad / "adapter_model.safetensors").string());
      const int64_t rank = x["rank"].get<int64_t>();
      EXPECT_EQ(f.tensors.at("layers.2.lora_A.weight").shape(), (Shape{rank, 128}));
      EXPECT_EQ(f.tensors.at("layers.2.lora_B.weight").shape(), (Shape{128, rank}));
      EXPECT_EQ(x["params"].get<int64_t>(), rank * 256);
    }
  }
  // The LoRA paper's grids: r=2 vs r=4 at seed 0, and seed 0 vs seed 1 at r=4, all in [0, 1].
  EXPECT_EQ(j["phi_ranks"]["grid"]["rows"], 2);
  EXPECT_EQ(j["phi_ranks"]["grid"]["cols"], 4);
  for (const auto& row : j["phi_seeds"]["grid"]["phi"])
    for (const auto& v : row) EXPECT_TRUE(v.get<double>() >= -1e-12 && v.get<double>() <= 1 + 1e-12);
  for (const char* f : {"results.md", "results.json", "phi_ranks.png", "phi_seeds.png", "accuracy_vs_rank.png",
                        "delta_vs_w_phi.png", "delta_vs_w_error.png", "base/model.safetensors"})
    EXPECT_GT(fs::file_size(dir_ / "run" / f), 100u) << f;
  // The saved base model can be passed back with --base, so a second run skips its training.
  ToolResult again =
      run("lora-experiment --quiet --ranks 3 --seeds 5 --no-compression --no-svd-baseline "
          "--train-limit 1000 --test-limit 500 --base " +
          lowrank::test::shell_quoted((dir_ / "run" / "base").string()) + " --out " +
          lowrank::test::shell_quoted((dir_ / "run2").string()));
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.out.find("| lora | 3 | 5 |"), std::string::npos) << again.out;
  EXPECT_FALSE(fs::exists(dir_ / "run2" / "base"));
}

TEST_F(LoraExperimentTool, RankOutOfRangeIsBadUsageBeforeAnyTraining) {
  expect_usage_error(run("lora-experiment --ranks 8,0 --out " + (dir_ / "x").string()),
                     "--ranks: must be a whole number >= 1, got '0'");
  expect_usage_error(run("lora-experiment --ranks 200 --out " + (dir_ / "x").string()), "min(in, out) = 128");
  EXPECT_FALSE(fs::exists(dir_ / "x" / "base")) << "no training may start before the ranks are checked";
}

TEST_F(LoraExperimentTool, BadLayerAndMissingFiles) {
  expect_usage_error(run("lora-experiment --layer layers.0 --out " + (dir_ / "x").string()), "not a Dense");
  expect_usage_error(run("lora-experiment --layer layers.9 --out " + (dir_ / "x").string()), "no such layer");
  expect_one_line_error(run("lora-experiment --data /nonexistent/fmnist --out " + (dir_ / "x").string()),
                        "/nonexistent/fmnist");
  expect_one_line_error(run("lora-experiment --base /nonexistent/model.safetensors --out " + (dir_ / "x").string()),
                        "/nonexistent/model.safetensors");
}

TEST_F(LoraExperimentTool, BadUsageExitsTwo) {
  EXPECT_EQ(run("lora-experiment --no-such-flag").rc, 2);
  EXPECT_EQ(run("lora-experiment --init xavier").rc, 2);
  EXPECT_EQ(run("lora-experiment --epochs 0").rc, 2);
  ToolResult help = run("lora-experiment --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--ranks"), std::string::npos);
}

}  // namespace
