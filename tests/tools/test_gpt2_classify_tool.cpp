// `lowrank gpt2 classify` run as a program on a toy task: a byte-level vocabulary, a one-block
// GPT-2 and three classes told apart by their words, so every mode learns within seconds; and the
// bad input every user can give, each a one-line error with exit 1 or 2 and nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "models/gpt2/checkpoint.h"
#include "models/gpt2/model.h"
#include "support/byte_vocab.h"
#include "support/files.h"
#include "support/tool_runner.h"

using namespace lowrank::test::tool_names;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Gpt2ClassifyTool : public lowrank::test::ToolTest {
 protected:
  void SetUp() override {
    ToolTest::SetUp();
    lowrank::test::write_byte_vocab(dir_ / "vocab");
    // A random one-block GPT-2: the classes are separable from the bytes alone.
    lowrank::models::gpt2::Config cfg;
    cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 16, cfg.n_ctx = 32, cfg.vocab_size = 257;
    lowrank::nn::Generator gen(7);
    lowrank::models::gpt2::save_checkpoint(lowrank::models::gpt2::Gpt2(cfg, gen), (dir_ / "base").string());
    // Three classes of 60 documents: which words a document uses gives its class away.
    const char* words[3][4] = {
        {"cat", "purr", "meow", "mice"}, {"dog", "bark", "bone", "walk"}, {"fish", "swim", "fin", "sea"}};
    const char* names[3] = {"cats", "dogs", "fish"};
    std::string tsv;
    fs::create_directories(dir_ / "folder");
    for (int k = 0; k < 3; ++k) {
      std::string fortunes;
      for (int i = 0; i < 60; ++i) {
        std::string doc = "no " + std::to_string(i) + ":";
        for (int w = 0; w < 3; ++w) doc += std::string(" ") + words[k][(i + w * (i % 3 + 1)) % 4];
        tsv += std::string(names[k]) + "\t" + doc + "\n";
        fortunes += doc + "\n%\n";
      }
      std::ofstream(dir_ / "folder" / names[k]) << fortunes;
    }
    std::ofstream(dir_ / "toy.tsv") << tsv;
  }

  std::string p(const std::string& name) const { return shell_quoted((dir_ / name).string()); }
  std::string common() const {
    return " --model " + p("base") + " --vocab " + p("vocab") + " --threads 1 --quiet --batch 8 --max-len 32";
  }
  std::vector<json> records(const std::string& run_dir) const {
    std::vector<json> out;
    std::ifstream in(dir_ / run_dir / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
  }
};

}  // namespace

TEST_F(Gpt2ClassifyTool, EveryModeLearnsTheToyTaskAndWritesItsOutputs) {
  ToolResult r = run("gpt2 classify --data " + p("toy.tsv") + common() + " --out " + p("out") +
                     " --mode lora,full,probe --steps 60 --probe-epochs 20 --lr 1e-2 --rank 2 --alpha 4 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // --quiet
  const json j = json::parse(r.out);
  EXPECT_EQ(j["classes"], json({"cats", "dogs", "fish"}));
  EXPECT_NEAR(j["chance"].get<double>(), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(j["documents"]["train"].get<int>() + j["documents"]["val"].get<int>() + j["documents"]["test"].get<int>(),
            180);
  EXPECT_GT(j["baseline"]["test"]["accuracy"].get<double>(), 0.8);
  ASSERT_EQ(j["modes"].size(), 3u);
  for (const json& m : j["modes"]) {
    const std::string mode = m["mode"];
    SCOPED_TRACE(mode);
    // Well above chance (1/3) on held-out documents. The probe sees only a random base's feature
    // of the last token, whose final byte two classes share sometimes ("mice", "bone"): 0.63 here.
    EXPECT_GT(m["test"]["accuracy"].get<double>(), 0.5);
    EXPECT_GT(m["val"]["accuracy"].get<double>(), 0.5);
    EXPECT_EQ(m["test"]["per_class"].size(), 3u);
    EXPECT_EQ(m["test"]["confusion"].size(), 9u);
    // The training loss fell: the last log interval's mean is below the first's.
    const std::vector<json> rec = records("out/" + mode);
    std::vector<double> losses;
    for (const json& x : rec)
      if (x.contains("train_loss")) losses.push_back(x["train_loss"].get<double>());
    ASSERT_GE(losses.size(), 2u);
    EXPECT_LT(losses.back(), 0.7 * losses.front());
    EXPECT_TRUE(rec.back().contains("test_accuracy"));
    EXPECT_TRUE(fs::file_size(dir_ / "out" / mode / "confusion.png") > 1000);
    EXPECT_TRUE(fs::is_regular_file(dir_ / "out" / mode / "score.safetensors"));
  }
  // Parameter counts: lora trains its adapters (1 block x 2 targets x rank 2 x (16 + 16)) and the
  // head (3 x 16); probe only the head; full everything.
  EXPECT_EQ(j["modes"][0]["trainable_parameters"].get<int64_t>(), 2 * 2 * 32 + 48);
  EXPECT_EQ(j["modes"][2]["trainable_parameters"].get<int64_t>(), 48);
  EXPECT_EQ(j["modes"][1]["trainable_parameters"].get<int64_t>(), j["modes"][1]["total_parameters"].get<int64_t>());
  // The LoRA run's adapter is PEFT's for GPT2ForSequenceClassification: the fused c_attn adapter
  // (query + value of rank 2: rank 4) and the head under modules_to_save.
  const auto adapter = lowrank::io::load_safetensors((dir_ / "out" / "lora" / "adapter_model.safetensors").string());
  EXPECT_EQ(adapter.tensors.at("base_model.model.score.weight").shape(), (lowrank::Shape{3, 16}));
  EXPECT_EQ(adapter.tensors.at("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight").shape(),
            (lowrank::Shape{4, 16}));
  const json peft = json::parse(slurp((dir_ / "out" / "lora" / "adapter_config.json").string()));
  EXPECT_EQ(peft["task_type"], "SEQ_CLS");
  EXPECT_EQ(peft["modules_to_save"], json({"score"}));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "out" / "full" / "model.safetensors"));
  EXPECT_TRUE(fs::is_regular_file(dir_ / "out" / "results.json"));
  // A second run into the same folder is refused unless --overwrite.
  ToolResult again = run("gpt2 classify --data " + p("toy.tsv") + common() + " --out " + p("out") + " --mode probe");
  EXPECT_EQ(again.rc, 2) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
}

TEST_F(Gpt2ClassifyTool, ResumeGivesTheSameWeightsBitForBit) {
  const std::string flags = " --data " + p("toy.tsv") + common() + " --steps 12 --lr 1e-2 --rank 2 --alpha 4";
  ASSERT_EQ(run("gpt2 classify" + flags + " --mode lora,full --out " + p("whole")).rc, 0);
  // Stopped in the LoRA run: a checkpoint, a line that says how to go on, no results yet.
  const ToolResult stop = run("gpt2 classify" + flags + " --mode lora,full --out " + p("halves") + " --stop-at 5");
  ASSERT_EQ(stop.rc, 0) << stop.err;
  EXPECT_NE(stop.out.find("stopped: lora at step 5 of 12"), std::string::npos) << stop.out;
  EXPECT_TRUE(fs::is_directory(dir_ / "halves" / "lora" / "checkpoint-5"));
  EXPECT_FALSE(fs::exists(dir_ / "halves" / "results.json"));
  EXPECT_FALSE(fs::exists(dir_ / "halves" / "full"));
  const ToolResult go_on = run("gpt2 classify" + flags + " --mode lora,full --resume " + p("halves") + " --json");
  ASSERT_EQ(go_on.rc, 0) << go_on.err;
  EXPECT_EQ(json::parse(go_on.out)["modes"][0]["resumed_from_step"], 5);
  // Stopped in a full fine-tuning run: its whole model goes on.
  ASSERT_EQ(run("gpt2 classify" + flags + " --mode full --out " + p("f") + " --stop-at 7").rc, 0);
  ASSERT_EQ(run("gpt2 classify" + flags + " --mode full --resume " + p("f")).rc, 0);
  for (const char* file : {"lora/adapter_model.safetensors", "lora/score.safetensors", "full/model.safetensors",
                           "full/score.safetensors"}) {
    SCOPED_TRACE(file);
    const std::string whole = read_bytes(dir_ / "whole" / file);
    ASSERT_FALSE(whole.empty());
    EXPECT_EQ(read_bytes(dir_ / "halves" / file), whole);
    if (std::string(file).rfind("full/", 0) == 0) {
      EXPECT_EQ(read_bytes(dir_ / "f" / file), whole);
    }
  }
  // Resuming a finished run trains nothing and scores what it holds: the accuracies come back.
  const json done =
      json::parse(run("gpt2 classify" + flags + " --mode lora,full --resume " + p("halves") + " --json").out);
  const json first = json::parse(read_bytes(dir_ / "whole" / "results.json"));
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(done["modes"][k]["resumed_from_step"], 12);
    EXPECT_EQ(done["modes"][k]["test"], first["modes"][k]["test"]);
  }
  // Other flags than the stopped run's, a folder with no run, --resume with --out: refused.
  expect_usage_error(run("gpt2 classify" + flags + " --rank 3 --mode lora --resume " + p("halves")), "rank");
  expect_one_line_error(run("gpt2 classify" + flags + " --resume " + p("nothing")), "no checkpoint");
  expect_usage_error(run("gpt2 classify" + flags + " --resume " + p("halves") + " --out " + p("x")), "--out");
}

TEST_F(Gpt2ClassifyTool, FolderOfClassesAndTheTable) {
  ToolResult r = run("gpt2 classify --data " + p("folder") + common() + " --out " + p("out") +
                     " --mode probe --probe-epochs 5 --classes fish,cats");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* s : {"GPT-2 probe", "bag-of-words", "majority class", "chance (1/2)", "| fish |", "| cats |"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  EXPECT_EQ(r.out.find("| dogs |"), std::string::npos) << r.out;
}

TEST_F(Gpt2ClassifyTool, BadInputIsOneLineAndWritesNothing) {
  fs::create_directories(dir_ / "empty");
  std::ofstream(dir_ / "folder" / "blank") << "\n%\n  \n";
  const std::string out = " --out " + p("out");
  expect_one_line_error(run("gpt2 classify --data " + p("empty") + common() + out), "is empty");
  expect_one_line_error(run("gpt2 classify --data " + p("folder") + common() + out), "class 'blank' has no documents");
  expect_usage_error(run("gpt2 classify --data " + p("folder") + " --classes cats,wolves" + common() + out),
                     "'wolves'");
  expect_one_line_error(run("gpt2 classify --data " + p("toy.tsv") + " --model " + p("nothing") + " --vocab " +
                            p("vocab") + " --quiet" + out),
                        "lowrank gpt2 train");
  expect_usage_error(run("gpt2 classify --data " + p("toy.tsv") + common() + out + " --mode lora --targets attn"),
                     "--targets 'attn' matches no layer");
  expect_usage_error(run("gpt2 classify --data " + p("toy.tsv") + common() + out + " --rank 17"), "--rank 17");
  expect_usage_error(run("gpt2 classify --data " + p("toy.tsv") + common() + out + " --mode lora,sideways"),
                     "unknown mode 'sideways'");
  expect_usage_error(run("gpt2 classify --data " + p("toy.tsv") + common() + out + " --rank 0"), "--rank");
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}
