// `lowrank gpt2 ...` run as a program. Training, generation and evaluation use a byte-level toy
// vocabulary (the 256 byte tokens in GPT-2's own symbol spelling plus <|endoftext|>, no merges) and
// a one-block model so each run takes a fraction of a second; tokenize uses the real GPT-2 files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/gpt2/checkpoint.h"
#include "models/gpt2/text_data.h"
#include "models/gpt2/tokenizer.h"
#include "support/byte_vocab.h"
#include "support/tool_runner.h"

using namespace lowrank::test::tool_names;

namespace {

const char* kCorpus =
    "The cat sat on the mat.\n%\nA dog ran in the park.\n%\nThe cat ran on the mat.\n%\n"
    "A dog sat in the park.\n%\nThe cat sat in the park.\n%\nA dog ran on the mat.\n%\n";

class Gpt2Tool : public lowrank::test::ToolTest {
 protected:
  void SetUp() override {
    ToolTest::SetUp();
    lowrank::test::write_byte_vocab(dir_ / "vocab");
    std::string text;
    for (int i = 0; i < 8; ++i) text += kCorpus;
    // Different documents, so the hashed validation split has some to pick.
    for (int i = 0; i < 24; ++i) text += "Fortune " + std::to_string(i) + ": the cat sat on the mat.\n%\n";
    std::ofstream(dir_ / "corpus.txt") << text;
    std::ofstream(dir_ / "tiny.json")
        << R"({"n_layer": 1, "n_head": 2, "n_embd": 16, "n_ctx": 16, "vocab_size": 257, "dropout": 0.0})";
  }

  std::string p(const std::string& name) const { return shell_quoted((dir_ / name).string()); }
  std::string vocab() const { return " --vocab " + p("vocab"); }
  // A short training run of the toy model; `extra` adds flags or overrides them (the last one wins).
  ToolResult train(const std::string& out, const std::string& extra = "") const {
    return run("gpt2 train --config " + p("tiny.json") + " --data " + p("corpus.txt") + vocab() + " --out " + p(out) +
               " --steps 12 --batch 4 --seq-len 16 --lr 1e-2 --warmup 2 --log-every 1 --val-every 4 "
               "--val-batches 2 --val-fraction 0.2 --threads 1 --no-progress " +
               extra);
  }
  std::vector<json> records(const std::string& run_dir) const {
    std::vector<json> out;
    std::ifstream in(dir_ / run_dir / "metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
  }
};

bool real_vocab_present() {
  const fs::path d = lowrank::models::gpt2::Tokenizer::default_dir();
  return fs::is_regular_file(d / "encoder.json") || fs::is_regular_file(d / "vocab.json");
}

}  // namespace

TEST_F(Gpt2Tool, TokenizeRoundTripsThroughTheProgram) {
  if (!real_vocab_present()) GTEST_SKIP() << "no GPT-2 vocabulary installed (tools/setup)";
  const std::string text =
      "Hello world!  It's 2024: ünïcödé, 漢字 and emoji 🙂.\n\ttabs\r\n<|endoftext|> \xff\xfe end";
  std::ofstream(dir_ / "in.txt", std::ios::binary) << text;
  ToolResult ids = run("gpt2 tokenize " + p("in.txt"));
  ASSERT_EQ(ids.rc, 0) << ids.err;
  EXPECT_EQ(ids.out.substr(0, 11), "15496\n995\n0");  // "Hello", " world", "!"
  std::ofstream(dir_ / "ids.txt") << ids.out;
  ToolResult back = run("gpt2 tokenize --decode " + p("ids.txt"));
  ASSERT_EQ(back.rc, 0) << back.err;
  EXPECT_EQ(back.out, text);

  // JSON both ways, through stdin; the literal <|endoftext|> is text unless --special.
  ToolResult arr = run("gpt2 tokenize --json < " + p("in.txt"));
  ASSERT_EQ(arr.rc, 0) << arr.err;
  json j = json::parse(arr.out);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(std::count(j.begin(), j.end(), 50256), 0);
  std::ofstream(dir_ / "ids.json") << arr.out;
  ToolResult back2 = run("gpt2 tokenize --decode - < " + p("ids.json"));
  ASSERT_EQ(back2.rc, 0) << back2.err;
  EXPECT_EQ(back2.out, text);
  ToolResult special = run("gpt2 tokenize --json --special " + p("in.txt"));
  ASSERT_EQ(special.rc, 0) << special.err;
  json s = json::parse(special.out);
  EXPECT_EQ(std::count(s.begin(), s.end(), 50256), 1);
  EXPECT_LT(s.size(), j.size());
}

TEST_F(Gpt2Tool, TokenizeRefusesBadIdsAndFiles) {
  std::ofstream(dir_ / "bad1.txt") << "12 13\n14 abc\n";
  expect_one_line_error(run("gpt2 tokenize --decode " + p("bad1.txt") + vocab()), "line 2: 'abc' is not a token id");
  std::ofstream(dir_ / "bad2.txt") << "12\n257\n";
  expect_one_line_error(run("gpt2 tokenize --decode " + p("bad2.txt") + vocab()), "outside the vocabulary");
  std::ofstream(dir_ / "bad3.json") << "[1, 2.5]";
  expect_one_line_error(run("gpt2 tokenize --decode " + p("bad3.json") + vocab()), "not a whole number");
  std::ofstream(dir_ / "bad4.json") << "[1, 2";
  expect_one_line_error(run("gpt2 tokenize --decode " + p("bad4.json") + vocab()), "not a valid JSON array");
  expect_one_line_error(run("gpt2 tokenize " + p("missing.txt") + vocab()), "cannot read");
  // Nesting that overflowed nlohmann's recursive printer, and a folder given as the text file.
  std::ofstream(dir_ / "deep.json") << std::string(100000, '[') + std::string(100000, ']');
  expect_one_line_error(run("gpt2 tokenize --decode " + p("deep.json") + vocab()), "nested deeper than 64");
  expect_one_line_error(run("gpt2 tokenize " + p("vocab") + vocab()), "is a folder, not a text file");
  expect_one_line_error(run("gpt2 tokenize " + p("bad1.txt") + " --vocab " + p("nowhere")), "vocabulary folder");
  // The toy vocabulary: one id per byte.
  std::ofstream(dir_ / "ab.txt") << "ab";
  ToolResult r = run("gpt2 tokenize --json " + p("ab.txt") + vocab());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "[97,98]\n");
}

TEST_F(Gpt2Tool, TrainWritesItsOutputsAndLearns) {
  ToolResult r = train("run", "--json --steps 30");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["steps"], 30);
  const double first = j["initial_val_loss"], last = j["val_loss"];
  EXPECT_NEAR(first, std::log(257.0), 0.3);  // near uniform at initialisation
  EXPECT_LT(last, first - 1.0) << "validation loss did not fall: " << first << " -> " << last;
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_FALSE(j["data"]["from_cache"].get<bool>());
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "config.json", "metrics.jsonl"})
    EXPECT_TRUE(fs::is_regular_file(dir_ / "run" / f)) << f;
  json cfg = json::parse(read_bytes(dir_ / "run" / "config.json"));
  EXPECT_EQ(cfg["n_embd"], 16);
  EXPECT_EQ(cfg["lowrank_train"]["steps"], 30);
  EXPECT_EQ(cfg["lowrank_train"]["seed"], 0);
  auto recs = records("run");
  int train_lines = 0, val_lines = 0;
  for (const json& rec : recs) (rec.contains("val_loss") ? val_lines : train_lines) += 1;
  EXPECT_EQ(train_lines, 30);
  EXPECT_EQ(val_lines, 9);  // step 0, every 4 steps, and the last

  // The same text again: tokens come from the cache.
  ToolResult again = train("run2", "--json --steps 3 --cache-dir " + p("run"));
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_TRUE(json::parse(again.out)["data"]["from_cache"].get<bool>());
}

TEST_F(Gpt2Tool, ResumeGivesTheSameLossesAsOneRun) {
  // Dropout on, so the restored dropout stream matters too.
  std::ofstream(dir_ / "tiny.json", std::ios::trunc)
      << R"({"n_layer": 1, "n_head": 2, "n_embd": 16, "n_ctx": 16, "vocab_size": 257, "dropout": 0.1})";
  ASSERT_EQ(train("full").rc, 0);
  ToolResult half = train("part", "--stop-at 6");
  ASSERT_EQ(half.rc, 0) << half.err;
  // No --out: a resumed run continues in its own folder (not in the default runs/gpt2).
  ToolResult rest = run("gpt2 train --resume " + p("part") + " --data " + p("corpus.txt") + vocab() +
                        " --steps 12 --batch 4 --seq-len 16 --lr 1e-2 --warmup 2 --log-every 1 --val-every 4 "
                        "--val-batches 2 --val-fraction 0.2 --threads 1 --no-progress --json");
  ASSERT_EQ(rest.rc, 0) << rest.err;
  EXPECT_EQ(json::parse(rest.out)["resumed_from_step"], 6);
  EXPECT_FALSE(fs::exists(dir_ / "runs")) << "--resume without --out wrote to the default folder";
  auto full = records("full"), part = records("part");
  std::map<std::pair<int64_t, std::string>, double> a, b;
  for (const json& r : full)
    for (const char* k : {"train_loss", "val_loss"})
      if (r.contains(k)) a[{r["step"], k}] = r[k];
  for (const json& r : part)
    for (const char* k : {"train_loss", "val_loss"})
      if (r.contains(k)) b[{r["step"], k}] = r[k];
  ASSERT_EQ(a.size(), 12u + 4u);
  for (const auto& [key, v] : a) {
    ASSERT_TRUE(b.count(key)) << key.first << " " << key.second;
    EXPECT_EQ(b[key], v) << "step " << key.first << " " << key.second;  // bit for bit
  }
  // Asking for no more steps than done is refused.
  ToolResult done = run("gpt2 train --resume " + p("full") + " --out " + p("x") + " --data " + p("corpus.txt") +
                        vocab() + " --steps 12 --seq-len 16 --threads 1");
  expect_one_line_error(done, "has done 12 steps already");
}

TEST_F(Gpt2Tool, GenerateIsTheSameWithAndWithoutTheKvCache) {
  ASSERT_EQ(train("run", "--steps 20").rc, 0);
  // 40 new tokens after a 5-token prompt pass the 16-token context: the window moves twice.
  for (const char* sampling :
       {" --temperature 0", " --temperature 1 --top-k 20 --seed 5", " --temperature 0.9 --top-p 0.9 --seed 11"}) {
    const std::string cmd = "gpt2 generate --model " + p("run") + vocab() +
                            " --prompt 'The c' --max-tokens 40 --ignore-eot --threads 1" + sampling;
    ToolResult with = run(cmd), without = run(cmd + " --no-kv-cache");
    ASSERT_EQ(with.rc, 0) << with.err;
    ASSERT_EQ(without.rc, 0) << without.err;
    EXPECT_EQ(with.out, without.out) << sampling;
    EXPECT_EQ(with.out.substr(0, 5), "The c");
    EXPECT_NE(with.err.find("tokens/s"), std::string::npos) << with.err;
    EXPECT_NE(with.err.find("KV cache on"), std::string::npos) << with.err;
    EXPECT_NE(without.err.find("KV cache off"), std::string::npos) << without.err;
  }
  ToolResult j = run("gpt2 generate --model " + p("run/model.safetensors") + vocab() +
                     " --max-tokens 12 --ignore-eot --seed 2 --json --threads 1");
  ASSERT_EQ(j.rc, 0) << j.err;
  json g = json::parse(j.out);
  EXPECT_EQ(g["tokens"], 12);
  EXPECT_EQ(g["ids"].size(), 12u);
  EXPECT_GT(g["tokens_per_s"].get<double>(), 0.0);
}

TEST_F(Gpt2Tool, EvalPrintsAPerplexity) {
  ASSERT_EQ(train("run", "--steps 20").rc, 0);
  ToolResult r = run("gpt2 eval --model " + p("run") + vocab() + " --data " + p("corpus.txt") + " --json --threads 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  // Every token but the first is scored: bytes of the documents plus one <|endoftext|> each, minus one.
  const std::string text = read_bytes(dir_ / "corpus.txt");
  int64_t tokens = 0;
  for (std::string_view d : lowrank::models::gpt2::split_documents(text)) tokens += static_cast<int64_t>(d.size()) + 1;
  EXPECT_EQ(j["tokens_scored"], tokens - 1);
  EXPECT_EQ(j["context"], 16);
  EXPECT_EQ(j["stride"], 8);
  const double ppl = j["perplexity"];
  EXPECT_GT(ppl, 1.0);
  EXPECT_LT(ppl, 257.0);  // better than uniform after training
  EXPECT_NEAR(std::log(ppl), j["loss"].get<double>(), 1e-9);
  ToolResult text_out = run("gpt2 eval --model " + p("run") + vocab() + " " + p("corpus.txt") + " --stride 16");
  ASSERT_EQ(text_out.rc, 0) << text_out.err;
  EXPECT_EQ(text_out.out.rfind("perplexity ", 0), 0u) << text_out.out;
}

TEST_F(Gpt2Tool, HuggingFaceCheckpointsWorkWithEverySubcommand) {
  ASSERT_EQ(train("run", "--steps 6").rc, 0);
  {
    auto model = lowrank::models::gpt2::load_checkpoint((dir_ / "run").string());
    lowrank::models::gpt2::save_hf_checkpoint(*model, (dir_ / "hf").string());
  }
  ASSERT_TRUE(fs::is_regular_file(dir_ / "hf" / "model.safetensors"));
  const std::string gen = vocab() + " --prompt 'A dog' --max-tokens 20 --temperature 0 --ignore-eot --threads 1";
  ToolResult ours = run("gpt2 generate --model " + p("run") + gen);
  ToolResult hf = run("gpt2 generate --model " + p("hf") + gen);
  ToolResult hf_file = run("gpt2 generate --model " + p("hf/model.safetensors") + gen);
  ASSERT_EQ(ours.rc, 0) << ours.err;
  ASSERT_EQ(hf.rc, 0) << hf.err;
  ASSERT_EQ(hf_file.rc, 0) << hf_file.err;
  EXPECT_EQ(hf.out, ours.out);
  EXPECT_EQ(hf_file.out, ours.out);

  const std::string ev = vocab() + " --data " + p("corpus.txt") + " --json --threads 1";
  ToolResult e1 = run("gpt2 eval --model " + p("run") + ev), e2 = run("gpt2 eval --model " + p("hf") + ev);
  ASSERT_EQ(e1.rc, 0) << e1.err;
  ASSERT_EQ(e2.rc, 0) << e2.err;
  EXPECT_EQ(json::parse(e1.out)["perplexity"], json::parse(e2.out)["perplexity"]);

  // Fine-tuning from the HF folder starts where the weights are: its first validation loss is the
  // trained run's last one (same split, same windows).
  ToolResult ft = run("gpt2 train --init " + p("hf") + " --data " + p("corpus.txt") + vocab() + " --out " + p("ft") +
                      " --steps 2 --warmup 0 --seq-len 16 --val-batches 2 --val-fraction 0.2 --batch 4 --threads 1 "
                      "--no-progress --json");
  ASSERT_EQ(ft.rc, 0) << ft.err;
  auto recs = records("run");
  double last_val = -1;
  for (const json& r : recs)
    if (r.contains("val_loss")) last_val = r["val_loss"];
  EXPECT_DOUBLE_EQ(json::parse(ft.out)["initial_val_loss"].get<double>(), last_val);
}

TEST_F(Gpt2Tool, BadFlagsAndFilesAreOneLineErrors) {
  // Runtime: exit 1 and one line.
  expect_one_line_error(train("r", "--data " + p("missing.txt")), "does not exist");
  std::ofstream(dir_ / "short.txt") << "tiny\n";
  expect_one_line_error(run("gpt2 train --config " + p("tiny.json") + " --data " + p("short.txt") + vocab() +
                            " --out " + p("r") + " --val-fraction 0 --threads 1"),
                        "fewer than --seq-len + 1");
  expect_one_line_error(train("r", "--seq-len 17"), "longer than the model's context");
  expect_one_line_error(run("gpt2 generate --model " + p("nothing") + vocab()), "no model at");
  std::ofstream(dir_ / "garbage.safetensors") << "not a safetensors file";
  expect_one_line_error(run("gpt2 generate --model " + p("garbage.safetensors") + vocab()), "cannot load the model");
  expect_one_line_error(run("gpt2 eval --model " + p("nothing") + vocab()), "no model at");
  ASSERT_EQ(train("run", "--steps 3").rc, 0);
  expect_one_line_error(run("gpt2 eval --model " + p("run") + vocab() + " --data " + p("corpus.txt") + " --stride 20"),
                        "stride");
  // The real vocabulary has more ids than the toy model.
  if (real_vocab_present()) expect_one_line_error(run("gpt2 generate --model " + p("run")), "vocabulary has 257 ids");

  // Usage: exit 2.
  expect_usage_error(run("gpt2 train --preset nope --out " + p("r") + vocab() + " --data " + p("corpus.txt")),
                     "--preset: nope not in {small,gpt2,gpt2-medium,gpt2-large,gpt2-xl}");
  // tiny has a 64-id vocabulary, which GPT-2's tokenizer does not fit: not offered.
  expect_usage_error(run("gpt2 train --preset tiny --out " + p("r") + vocab()), "--preset");
  expect_usage_error(train("r", "--steps 2 --warmup 2"), "--warmup 2 must be below --steps 2");
  EXPECT_EQ(run("gpt2").rc, 2);
  EXPECT_EQ(run("gpt2 bogus").rc, 2);
  EXPECT_EQ(train("r", "--steps 0").rc, 2);
  EXPECT_EQ(train("r", "--batch -1").rc, 2);
  EXPECT_EQ(train("r", "--init " + p("run")).rc, 2);  // --config and --init exclude each other
  EXPECT_EQ(train("r", "--val-fraction 1").rc, 2);
  EXPECT_EQ(run("gpt2 generate --top-p 1.5").rc, 2);
  EXPECT_EQ(run("gpt2 generate --temperature -1").rc, 2);
  EXPECT_EQ(run("gpt2 eval --split nope").rc, 2);
  EXPECT_EQ(run("gpt2 tokenize --bogus").rc, 2);
  ToolResult help = run("gpt2 train --help");
  EXPECT_EQ(help.rc, 0);
  EXPECT_NE(help.out.find("--max-time"), std::string::npos);
}
