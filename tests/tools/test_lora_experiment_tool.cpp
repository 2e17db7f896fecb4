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
    // lora keeps W: no compression ratio; the others replace it.
    EXPECT_EQ(x.contains("compression_ratio"), x["method"] != "lora") << x.dump();
    if (x["method"] != "svd") {
      // φ_r against its chance level r/n (n = 128 inputs).
      const double r = x["rank"].get<double>();
      EXPECT_DOUBLE_EQ(x["phi_r_chance"].get<double>(), r / 128.0) << x.dump();
      EXPECT_NEAR(x["phi_r_over_chance"].get<double>(), x["phi_r"].get<double>() / (r / 128.0), 1e-12);
      const fs::path ad = x["adapter_dir"].get<std::string>();
      EXPECT_TRUE(fs::exists(ad / "adapter_config.json"));
      io::SafetensorsFile f = io::load_safetensors((ad / "adapter_model.safetensors").string());
      const int64_t rank = x["rank"].get<int64_t>();
      EXPECT_EQ(f.tensors.at("layers.2.lora_A.weight").shape(), (Shape{rank, 128}));
      EXPECT_EQ(f.tensors.at("layers.2.lora_B.weight").shape(), (Shape{128, rank}));
      EXPECT_EQ(x["params"].get<int64_t>(), rank * 256);
    }
  }
  EXPECT_EQ(j["options"]["base_epochs"], 1);
  EXPECT_EQ(j["scales"].size(), 1u);
  EXPECT_EQ(j["scales"][0]["base_scale"], 0.9);
  // The LoRA paper's grids: r=2 vs r=4 at seed 0, and seed 0 vs seed 1 at r=4, all in [0, 1],
  // with the chance level of their cells: mean of max(i, j)/128 over the 2 x 4 grid.
  EXPECT_EQ(j["phi_ranks"]["grid"]["rows"], 2);
  EXPECT_EQ(j["phi_ranks"]["grid"]["cols"], 4);
  EXPECT_DOUBLE_EQ(j["phi_ranks"]["mean_chance"].get<double>(), (1 + 2 + 3 + 4 + 2 + 2 + 3 + 4) / 8.0 / 128.0);
  const std::string md = lowrank::test::read_bytes(dir_ / "run" / "results.md");
  for (const char* term : {"| φ_r | chance | φ/chance |", "amplification = ", "compression = ", "## base_scale 0.9",
                           "`phi_ranks.png`: lora runs at base_scale 0.9, seed 0"})
    EXPECT_NE(md.find(term), std::string::npos) << term << "\n" << md;
  // The captions promise the white chance contour only where φ crosses chance.
  for (const char* grid : {"phi_ranks", "phi_seeds"}) {
    const double share = j[grid]["share_above_chance"].get<double>();
    const std::string caption = share == 1   ? "phi above chance max(i, j)/128 in every cell (no contour to draw)"
                                : share == 0 ? "phi at or below chance max(i, j)/128 in every cell (no contour to draw)"
                                             : "white dashes: phi = chance max(i, j)/128";
    EXPECT_NE(md.find("`" + std::string(grid) + ".png`: lora runs at base_scale 0.9"), std::string::npos) << grid;
    EXPECT_NE(md.find(caption), std::string::npos) << grid << " (share " << share << ")\n" << md;
  }
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
  // results.json records the loaded base's real epochs (its metrics), not --base-epochs' default.
  nlohmann::json j2 = nlohmann::json::parse(lowrank::test::read_bytes(dir_ / "run2" / "results.json"));
  EXPECT_EQ(j2["options"]["base_epochs"], 1);
  EXPECT_EQ(j2["base"]["trained_here"], false);
}

// One run for several features, to keep CI short: the --base-scales sweep, one rank (figures with
// nothing to show are skipped), two --layer's, and LoraConfig's --rslora and --dropout.
TEST_F(LoraExperimentTool, BaseScaleSweepOneRankTwoLayersRsLoraDropout) {
  ToolResult r =
      run("lora-experiment --quiet --base-epochs 1 --train-limit 1000 --test-limit 500 --ranks 4 --seeds 0 "
          "--no-compression --base-scales 0.9,0 --layer layers.2 --layer layers.3 --rslora --dropout 0.1 "
          "--json --out " +
          lowrank::test::shell_quoted((dir_ / "run").string()));
  ASSERT_EQ(r.rc, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["scales"].size(), 2u);
  EXPECT_EQ(j["scales"][1]["base_scale"], 0.0);
  // W x 0 leaves the layer to the adapter: the scaled model is far below the base.
  EXPECT_LT(j["scales"][1]["scaled_acc"].get<double>(), j["base_acc"].get<double>());
  ASSERT_EQ(j["runs"].size(), 2u + 1u);  // lora at each scale, svd once
  EXPECT_EQ(j["runs"][0]["adapter_dir"].get<std::string>(), (dir_ / "run" / "adapters" / "lora_r4_s0_bs0.9").string());
  EXPECT_EQ(j["runs"][1]["base_scale"], 0.0);
  const fs::path d = dir_ / "run";
  for (const char* f : {"accuracy_vs_rank_bs0.9.png", "accuracy_vs_rank_bs0.png", "delta_vs_w_phi_bs0.png",
                        "adapters/lora_r4_s0_bs0/adapter_model.safetensors"})
    EXPECT_TRUE(fs::exists(d / f)) << f;
  // One rank and one seed: no φ grid would compare anything, so none is drawn.
  for (const char* f : {"phi_ranks_bs0.9.png", "phi_seeds_bs0.9.png", "phi_ranks.png", "accuracy_vs_rank.png"})
    EXPECT_FALSE(fs::exists(d / f)) << f;
  EXPECT_FALSE(j.contains("phi_ranks"));
  const std::string md = lowrank::test::read_bytes(d / "results.md");
  EXPECT_NE(md.find("## base_scale 0\n"), std::string::npos) << md;
  // Both layers adapted (128 -> 128 and 128 -> 10), one report each, all in one adapter file.
  EXPECT_EQ(j["runs"][0]["params"], 4 * (128 + 128) + 4 * (128 + 10));
  ASSERT_EQ(j["runs"][0]["reports"].size(), 2u);
  EXPECT_EQ(j["runs"][0]["reports"][1]["layer"], "layers.3");
  EXPECT_EQ(j["runs"][0]["reports"][1]["out"], 10);
  EXPECT_NE(md.find("| lora | 4 | 0 | layers.3 |"), std::string::npos) << md;
  io::SafetensorsFile f = io::load_safetensors((d / "adapters/lora_r4_s0_bs0/adapter_model.safetensors").string());
  EXPECT_EQ(f.tensors.at("layers.3.lora_B.weight").shape(), (Shape{10, 4}));
  // rsLoRA: scale alpha / sqrt(r) = 4 / 2 with alpha = r.
  EXPECT_DOUBLE_EQ(j["runs"][0]["report"]["scale"].get<double>(), 2.0);
  const nlohmann::json cfg =
      nlohmann::json::parse(lowrank::test::read_bytes(d / "adapters/lora_r4_s0_bs0/adapter_config.json"));
  EXPECT_EQ(cfg["use_rslora"], true);
  EXPECT_DOUBLE_EQ(cfg["lora_dropout"].get<double>(), 0.1);
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
  expect_usage_error(run("lora-experiment --layer layers.2,layers.2 --out " + (dir_ / "x").string()), "twice");
  expect_usage_error(run("lora-experiment --layer layers.2 --layer layers.3 --ranks 20 --out " + (dir_ / "x").string()),
                     "min(in, out) = 10 for layers.3");
  expect_one_line_error(run("lora-experiment --data /nonexistent/fmnist --out " + (dir_ / "x").string()),
                        "/nonexistent/fmnist");
  expect_one_line_error(run("lora-experiment --base /nonexistent/model.safetensors --out " + (dir_ / "x").string()),
                        "/nonexistent/model.safetensors");
}

TEST_F(LoraExperimentTool, BadUsageExitsTwo) {
  EXPECT_EQ(run("lora-experiment --no-such-flag").rc, 2);
  EXPECT_EQ(run("lora-experiment --init xavier").rc, 2);
  EXPECT_EQ(run("lora-experiment --epochs 0").rc, 2);
  EXPECT_EQ(run("lora-experiment --dropout 1").rc, 2);
  EXPECT_EQ(run("lora-experiment --compression --no-compression").rc, 2);
  expect_usage_error(run("lora-experiment --base-scales 0.5,0.5 --out " + (dir_ / "x").string()), "0.5 twice");
  expect_usage_error(run("lora-experiment --base-scales -1 --out " + (dir_ / "x").string()), "a number >= 0");
  ToolResult help = run("lora-experiment --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--ranks"), std::string::npos);
  // On/off settings say which is the default, in words.
  EXPECT_NE(help.out.find("also run the compression variant (base_scale 1 -> 0) (default: on)"), std::string::npos)
      << help.out;
  EXPECT_NE(help.out.find("--no-svd-baseline"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("{false}"), std::string::npos) << help.out;
}

}  // namespace
