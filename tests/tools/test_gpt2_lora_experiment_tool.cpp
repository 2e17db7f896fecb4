// `lowrank gpt2 lora-experiment` run as a program on a one-block toy GPT-2 with the byte vocabulary
// (as test_gpt2_lora_tool.cpp): every output of a small run, and bad input (one line, the exit
// code of docs/design.md, nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "support/byte_vocab.h"
#include "support/files.h"
#include "support/gpt2.h"
#include "support/tool_runner.h"

using namespace lowrank::test::tool_names;

namespace {

// The svd variant's ΔW error is the Eckart–Young bound (float32 factors, float64 report).
constexpr double kEckartYoungTol = 1e-5;

class Gpt2LoraExperimentTool : public lowrank::test::ToolTest {
 protected:
  void SetUp() override {
    ToolTest::SetUp();
    lowrank::test::write_byte_vocab(dir_ / "vocab");
    std::ofstream(dir_ / "corpus.txt") << lowrank::test::warp_corpus(60);
    std::ofstream(dir_ / "tiny.json") << lowrank::test::kTinyByteGpt2Json;
    const ToolResult b =
        run("gpt2 train --config " + p("tiny.json") + " --data " + p("corpus.txt") + vocab() + " --out " + p("base") +
            " --steps 4 --batch 4 --seq-len 16 --val-fraction 0.2 "
            "--threads 1 --quiet");
    ASSERT_EQ(b.rc, 0) << b.err;
  }

  std::string p(const std::string& name) const { return shell_quoted((dir_ / name).string()); }
  std::string vocab() const { return " --vocab " + p("vocab"); }
  ToolResult experiment(const std::string& extra) const {
    return run("gpt2 lora-experiment --base " + p("base") +
               " --steps 4 --warmup 1 --batch 2 --seq-len 8 "
               "--val-windows 4 --threads 1 --quiet " +
               extra);
  }
  // Nothing was written: no output folder and no partial one.
  void expect_nothing_at(const std::string& name) const {
    EXPECT_FALSE(fs::exists(dir_ / name)) << name;
    EXPECT_FALSE(fs::exists(dir_ / (name + ".partial"))) << name;
  }
};

TEST_F(Gpt2LoraExperimentTool, SmallRunWritesTablesFiguresAdaptersAndTheCommand) {
  const ToolResult r = experiment("--ranks 1,4 --seeds 0,1 --out " + p("exp") + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // --quiet
  const json j = json::parse(r.out);    // exactly one JSON object
  // The data default: the base's own text and split (its config.json).
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(fs::path(j["data"][0].get<std::string>()).filename(), "corpus.txt");
  EXPECT_DOUBLE_EQ(j["val_fraction"].get<double>(), 0.2);
  EXPECT_NE(j["command"].get<std::string>().find("gpt2 lora-experiment --base"), std::string::npos);
  EXPECT_NE(j["command"].get<std::string>().find("--ranks 1,4"), std::string::npos);
  ASSERT_EQ(j["targeted_layers"], (json{"h.0.attn.query", "h.0.attn.value"}));
  EXPECT_EQ(j["replaced_elements"], 2 * 16 * 16);
  const double base = j["base_val_loss"].get<double>(), scaled = j["scaled_val_loss"].get<double>();
  EXPECT_TRUE(std::isfinite(base) && std::isfinite(scaled));
  EXPECT_NE(base, scaled);
  ASSERT_EQ(j["runs"].size(), 2u * 2 + 2 + 2 + 2);  // lora rank × seed; compress, pissa, svd per rank
  for (const json& x : j["runs"]) {
    const int64_t rank = x["rank"];
    const std::string method = x["method"];
    EXPECT_EQ(x["trainable_parameters"], 2 * rank * (16 + 16)) << x["name"];
    EXPECT_NEAR(x["compression_ratio"].get<double>(), 512.0 / (64.0 * rank), 1e-12);
    EXPECT_NEAR(x["perplexity"].get<double>(), std::exp(x["val_loss"].get<double>()), 1e-9);
    EXPECT_EQ(x["train_losses"].size(), method == "svd" ? 0u : 4u) << x["name"];
    const fs::path ad = dir_ / "exp" / x["adapter_dir"].get<std::string>();
    EXPECT_TRUE(fs::exists(ad / "adapter_config.json")) << ad;
    EXPECT_TRUE(fs::exists(ad / "adapter_model.safetensors")) << ad;
    ASSERT_EQ(x["layers"].size(), 2u);
    for (const json& l : x["layers"]) {
      const double err = l["delta"]["relative_error"], ey = l["delta"]["eckart_young_error"];
      if (method == "svd") {
        EXPECT_NEAR(err, ey, kEckartYoungTol) << x["name"] << " " << l["path"];
      }
      if (method != "lora") {
        EXPECT_GE(err, ey - kEckartYoungTol) << x["name"];  // nothing beats the bound
      }
      EXPECT_GT(l["amplification"]["random"]["amplification"].get<double>(), 0.0);
      EXPECT_EQ(l["amplification"]["rank"], rank);
    }
  }
  // φ panels: r=1 vs r=4 (1 × 4) and seeds 0 vs 1 at r=4 (4 × 4), per layer × target.
  ASSERT_EQ(j["phi"].size(), 2u);
  EXPECT_EQ(j["phi"][0]["ranks"]["rows"], 1);
  EXPECT_EQ(j["phi"][0]["ranks"]["cols"], 4);
  EXPECT_EQ(j["phi"][0]["seeds"]["rows"], 4);
  for (const char* f :
       {"results.md", "results.json", "figures/val_loss_vs_rank_lora.png", "figures/val_loss_vs_rank_svd.png",
        "figures/val_loss_vs_rank_compress.png", "figures/val_loss_vs_rank_pissa.png"})
    EXPECT_TRUE(fs::exists(dir_ / "exp" / f)) << f;
  for (const json& f : j["figures"]) EXPECT_TRUE(fs::exists(dir_ / "exp" / f.get<std::string>())) << f;
  EXPECT_EQ(json::parse(read_bytes(dir_ / "exp" / "results.json"))["command"], j["command"]);
  EXPECT_FALSE(fs::exists(dir_ / "exp.partial"));
  const std::string md = read_bytes(dir_ / "exp" / "results.md");
  for (const char* s : {"| scaled (x0.90) |", "| svd | 4 |", "Eckart–Young", "## Amplification", "φ(A_r=1, A_r=4)"})
    EXPECT_NE(md.find(s), std::string::npos) << s;

  // A second run into the same folder is refused unless --overwrite, and leaves the first intact.
  const ToolResult again = experiment("--ranks 1 --seeds 0 --out " + p("exp"));
  EXPECT_EQ(again.rc, 2) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_TRUE(fs::exists(dir_ / "exp" / "adapters" / "lora_r4_s1"));
  // (a trailing slash names the same folder)
  const ToolResult over = experiment("--ranks 1 --seeds 0 --out " + p("exp") + "/ --overwrite");
  ASSERT_EQ(over.rc, 0) << over.err;
  EXPECT_FALSE(fs::exists(dir_ / "exp" / "adapters" / "lora_r4_s1"));
  EXPECT_TRUE(fs::exists(dir_ / "exp" / "adapters" / "svd_r1"));
}

TEST_F(Gpt2LoraExperimentTool, QuickRunsRanksOneAndEightWithOneSeed) {
  const ToolResult r = experiment("--quick --steps 2 --out " + p("quick") + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["ranks"], (json{1, 8}));
  EXPECT_EQ(j["seeds"], (json{0}));
  EXPECT_EQ(j["runs"].size(), 2u * 4);
  EXPECT_TRUE(j["phi"][0]["seeds"]["rows"] == 0);  // one seed: no seed grid
}

TEST_F(Gpt2LoraExperimentTool, MissingBaseSaysHowToMakeOne) {
  const ToolResult r = run("gpt2 lora-experiment --out " + p("exp"));  // the default base, runs/gpt2, is absent
  expect_one_line_error(r, "lowrank gpt2 train");
  expect_nothing_at("exp");
}

TEST_F(Gpt2LoraExperimentTool, BadInputIsOneLineAndWritesNothing) {
  // Ranks above min(in, out) = 16, blocks the base lacks, targets that do not exist: usage (2).
  for (const std::string& bad : {std::string("--ranks 4,17"), std::string("--layers 3"),
                                 std::string("--targets query,nope"), std::string("--seeds 0,0")}) {
    const ToolResult r = experiment(bad + " --out " + p("exp"));
    EXPECT_EQ(r.rc, 2) << bad << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    expect_nothing_at("exp");
  }
  // A base whose text is too short to give a validation window of --seq-len + 1 tokens: failure (1).
  std::ofstream(dir_ / "short.txt") << "a\n%\nb\n%\nc\n";
  const ToolResult s = experiment("--ranks 1 --data " + p("short.txt") + " --out " + p("exp"));
  expect_one_line_error(s, "validation");
  expect_nothing_at("exp");
  // An output folder that cannot be made (its parent is a file): failure (1), nothing left.
  std::ofstream(dir_ / "file") << "x";
  const ToolResult w = experiment("--ranks 1 --seeds 0 --out " + p("file") + "/exp");
  expect_one_line_error(w, "output folder");
  EXPECT_FALSE(fs::exists(dir_ / "file.partial"));
  // A base that is not a model at all.
  fs::create_directories(dir_ / "empty");
  const ToolResult e = run("gpt2 lora-experiment --ranks 1 --base " + p("empty") + " --out " + p("exp"));
  EXPECT_EQ(e.rc, 1) << e.err;
  expect_nothing_at("exp");
}

}  // namespace
