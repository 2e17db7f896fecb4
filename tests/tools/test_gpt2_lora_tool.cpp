// `lowrank gpt2 lora`, `gpt2 merge` and `--adapter` run as a program, on a one-block toy GPT-2 with
// a byte-level toy vocabulary (as test_gpt2_tool.cpp), so each run takes a fraction of a second.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/gpt2/checkpoint.h"
#include "support/byte_vocab.h"
#include "support/files.h"
#include "support/gpt2.h"
#include "support/tool_runner.h"

using namespace lowrank::test::tool_names;

namespace {

class Gpt2LoraTool : public lowrank::test::ToolTest {
 protected:
  void SetUp() override {
    ToolTest::SetUp();
    lowrank::test::write_byte_vocab(dir_ / "vocab");
    std::ofstream(dir_ / "corpus.txt") << lowrank::test::warp_corpus(40);
    std::ofstream(dir_ / "tiny.json") << lowrank::test::kTinyByteGpt2Json;
    const ToolResult b = run("gpt2 train --config " + p("tiny.json") + " --data " + p("corpus.txt") + vocab() +
                             " --out " + p("base") + " --steps 4 --batch 4 --seq-len 16 --threads 1 --quiet");
    ASSERT_EQ(b.rc, 0) << b.err;
  }

  std::string p(const std::string& name) const { return shell_quoted((dir_ / name).string()); }
  std::string vocab() const { return " --vocab " + p("vocab"); }
  ToolResult lora(const std::string& out, const std::string& extra = "") const {
    return run("gpt2 lora --model " + p("base") + " --data " + p("corpus.txt") + vocab() + " --out " + p(out) +
               " --steps 6 --batch 4 --seq-len 16 --rank 2 --lr 1e-2 --full-lr 1e-2 --warmup 1 --log-every 1 "
               "--val-every 3 --val-batches 2 --val-fraction 0.2 --checkpoint-every 3 --threads 1 --quiet " +
               extra);
  }
  double perplexity(const std::string& args) const {
    const ToolResult r = run("gpt2 eval --data " + p("corpus.txt") + vocab() + " --threads 1 --quiet --json " + args);
    EXPECT_EQ(r.rc, 0) << r.err;
    return r.rc == 0 ? json::parse(r.out)["perplexity"].get<double>() : NAN;
  }
};

}  // namespace

TEST_F(Gpt2LoraTool, TrainsAdaptersBesideFullFineTuningAndWritesPeftFiles) {
  const ToolResult r = lora("lora", "--targets query,value,fc --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // --quiet
  const json j = json::parse(r.out);
  EXPECT_EQ(j["steps"], 6);
  ASSERT_EQ(j["runs"].size(), 2u);
  const json& l = j["runs"][0];
  const json& f = j["runs"][1];
  // 3 adapters of rank 2 on 16 -> 16 (q, v) and 16 -> 64 (fc), one block.
  EXPECT_EQ(l["trainable_parameters"], 2 * (2 * 16 + 16 * 2) + (2 * 16 + 64 * 2));
  EXPECT_GT(f["trainable_parameters"].get<int64_t>(), 20 * l["trainable_parameters"].get<int64_t>());
  EXPECT_DOUBLE_EQ(l["val_loss_before"].get<double>(), f["val_loss_before"].get<double>());  // the same base
  EXPECT_LT(l["val_loss_after"].get<double>(), l["val_loss_before"].get<double>());
  for (const char* file : {"adapter_model.safetensors", "adapter_config.json", "metrics.jsonl", "training_loss.png",
                           "config.json", "full-finetune/model.safetensors"})
    EXPECT_TRUE(fs::exists(dir_ / "lora" / file)) << file;
  const json cfg = json::parse(read_bytes(dir_ / "lora" / "adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["rank_pattern"]["c_attn"], 4);
  EXPECT_EQ(cfg["target_modules"], (json{"c_attn", "c_fc"}));

  // The adapter on the base, and the merged model (ours and HF's layout), score alike.
  const double with_adapter = perplexity("--model " + p("base") + " --adapter " + p("lora"));
  const ToolResult m = run("gpt2 merge --model " + p("base") + " --adapter " + p("lora") + " --out " + p("merged"));
  ASSERT_EQ(m.rc, 0) << m.err;
  const ToolResult mh =
      run("gpt2 merge --model " + p("base") + " --adapter " + p("lora") + " --out " + p("merged-hf") + " --hf --json");
  ASSERT_EQ(mh.rc, 0) << mh.err;
  EXPECT_EQ(json::parse(mh.out)["adapters"], 3);
  EXPECT_NEAR(perplexity("--model " + p("merged")), with_adapter, 1e-5 * with_adapter);
  EXPECT_NEAR(perplexity("--model " + p("merged-hf")), with_adapter, 1e-5 * with_adapter);
  EXPECT_GT(std::abs(perplexity("--model " + p("base")) - with_adapter), 1e-3);
  // An existing model is not overwritten without --overwrite.
  const ToolResult again = run("gpt2 merge --model " + p("base") + " --adapter " + p("lora") + " --out " + p("merged"));
  EXPECT_EQ(again.rc, 2) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;

  const ToolResult g = run("gpt2 generate --model " + p("base") + " --adapter " + p("lora") + vocab() +
                           " --prompt Captain --max-tokens 5 --temperature 0 --json --threads 1 --quiet");
  ASSERT_EQ(g.rc, 0) << g.err;
  EXPECT_EQ(json::parse(g.out)["tokens"].get<int>(), 5);
}

TEST_F(Gpt2LoraTool, ResumeGivesTheSameAdapterBitForBit) {
  ASSERT_EQ(lora("whole", "--no-compare-full --dropout 0.1").rc, 0);
  ASSERT_EQ(lora("halves", "--no-compare-full --dropout 0.1 --stop-at 3").rc, 0);
  const ToolResult r =
      run("gpt2 lora --resume " + p("halves") + " --model " + p("base") + " --data " + p("corpus.txt") + vocab() +
          " --steps 6 --batch 4 --seq-len 16 --rank 2 --lr 1e-2 --warmup 1 --log-every 1 "
          "--val-every 3 --val-batches 2 --val-fraction 0.2 --checkpoint-every 3 --threads 1 "
          "--quiet --no-compare-full --dropout 0.1");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_bytes(dir_ / "halves" / "adapter_model.safetensors"),
            read_bytes(dir_ / "whole" / "adapter_model.safetensors"));
}

TEST_F(Gpt2LoraTool, BadInputIsOneLineAndLeavesNoOutput) {
  struct Bad {
    std::string flags, needle;
    int rc;
  };
  for (const Bad& b : {Bad{"--targets query,q_proj", "unknown target 'q_proj'", 2},
                       Bad{"--rank 17", "larger than min(in, out) = 16", 2}, Bad{"--layers 3", "block 3", 2},
                       Bad{"--model " + p("nothing"), "gpt2 train", 1}}) {
    const ToolResult r = lora("bad", b.flags);
    EXPECT_EQ(r.rc, b.rc) << b.flags << ": " << r.err;
    EXPECT_NE(r.err.find(b.needle), std::string::npos) << b.flags << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "bad")) << b.flags;
  }
  const ToolResult zero = lora("bad", "--rank 0");  // refused by the flag's own check
  EXPECT_EQ(zero.rc, 2) << zero.err;
  EXPECT_NE(zero.err.find("--rank"), std::string::npos) << zero.err;
  EXPECT_FALSE(fs::exists(dir_ / "bad"));
  // An adapter for another model size.
  std::ofstream(dir_ / "wide.json")
      << R"({"n_layer": 1, "n_head": 2, "n_embd": 32, "n_ctx": 16, "vocab_size": 257, "dropout": 0.0})";
  ASSERT_EQ(run("gpt2 train --config " + p("wide.json") + " --data " + p("corpus.txt") + vocab() + " --out " +
                p("wide") + " --steps 1 --batch 2 --seq-len 16 --threads 1 --quiet")
                .rc,
            0);
  ASSERT_EQ(run("gpt2 lora --model " + p("wide") + " --data " + p("corpus.txt") + vocab() + " --out " + p("wide-lora") +
                " --steps 1 --batch 2 --seq-len 16 --rank 2 --val-fraction 0.2 --threads 1 --quiet --no-compare-full")
                .rc,
            0);
  expect_one_line_error(run("gpt2 eval --model " + p("base") + " --adapter " + p("wide-lora") + " --data " +
                            p("corpus.txt") + vocab() + " --threads 1 --quiet"),
                        "width 32");
  expect_one_line_error(run("gpt2 merge --model " + p("base") + " --adapter " + p("nowhere") + " --out " + p("m")),
                        "no adapter at");
  EXPECT_FALSE(fs::exists(dir_ / "m"));
}
