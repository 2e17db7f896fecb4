// `lowrank train-mlp`, run as a program on a small synthetic Fashion-MNIST folder: the files it
// writes, --json, --resume giving bit-identical losses, a NaN loss keeping the last good
// checkpoint, and bad input (exit 1, one line) and bad usage (exit 2).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/io/idx.h"
#include "core/io/safetensors.h"
#include "core/ops.h"

#include "support/tool_runner.h"

using namespace lowrank;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kBin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";

using Result = lowrank::test::ToolResult;

std::string slurp(const fs::path& p) {
  return lowrank::test::read_bytes(p);
}

std::string quoted(const std::string& s) {
  return lowrank::test::shell_quoted(s);
}

int64_t count_lines(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// n samples of 10 noisy prototype classes as u8 IDX files with the Debian package's names.
void write_split(const fs::path& dir, const std::string& prefix, int64_t n, uint64_t seed) {
  NoGradGuard ng;
  Tensor protos = rand({10, 784}, 100);
  std::vector<int64_t> lab(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) lab[static_cast<size_t>(i)] = (i * 3 + i / 10) % 10;
  Tensor labels = Tensor::from_vector(lab, {n});
  Tensor x = add(embedding(protos, labels), sub(mul(rand({n, 784}, seed), 0.8), 0.4));
  x = minimum(maximum(x, Tensor::zeros({1})), Tensor::ones({1}));
  Tensor img = mul(x, 255.0).to(DType::U8).reshape({n, 28, 28});
  io::write_file_atomic((dir / (prefix + "-images-idx3-ubyte")).string(), io::encode_idx(img));
  io::write_file_atomic((dir / (prefix + "-labels-idx1-ubyte")).string(), io::encode_idx(labels.to(DType::U8)));
}

class TrainMlpTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lowrank_train_mlp_tool_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    write_split(dir_ / "data", "train", 320, 1);
    write_split(dir_ / "data", "t10k", 100, 2);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `lowrank train-mlp` on the synthetic data with one thread (bits do not depend on timing).
  Result run(const std::string& args, bool with_data = true) const {
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    // In the test's folder: a default output folder (runs/mlp) would land there.
    std::string cmd = "cd " + quoted(dir_.string()) + " && " + quoted(kBin) + " train-mlp --threads 1 ";
    if (with_data) cmd += "--data " + quoted((dir_ / "data").string()) + " ";
    cmd += args + " >" + quoted(out.string()) + " 2>" + quoted(err.string());
    const int status = std::system(cmd.c_str());
    Result r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out), r.err = slurp(err);
    return r;
  }
  std::string out(const std::string& name) const { return quoted((dir_ / name).string()); }
  fs::path path(const std::string& name) const { return dir_ / name; }

  std::vector<json> metrics(const std::string& run) const {
    std::vector<json> v;
    std::istringstream in(slurp(dir_ / run / "metrics.jsonl"));
    std::string line;
    while (std::getline(in, line)) v.push_back(json::parse(line));
    return v;
  }

  fs::path dir_;
};

}  // namespace

TEST_F(TrainMlpTool, WritesEveryOutputAndOneJsonObject) {
  Result r = run("--epochs 2 --seed 3 --json --out " + out("run"));
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);  // exactly one object: parse fails on trailing text
  EXPECT_EQ(j["epochs"], 2);
  EXPECT_EQ(j["seed"], 3);
  EXPECT_EQ(j["history"].size(), 2u);
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "metrics.jsonl", "config.json",
                        "training_loss.png", "training_accuracy.png"})
    EXPECT_TRUE(fs::is_regular_file(path("run") / f)) << f;
  EXPECT_EQ(slurp(path("run") / "training_loss.png").substr(1, 3), "PNG");
  auto m = metrics("run");
  ASSERT_EQ(m.size(), 2u);
  for (const char* k : {"train_loss", "train_acc", "test_loss", "test_acc", "seconds"})
    EXPECT_TRUE(m[1].contains(k)) << k;
  EXPECT_LT(m[1]["train_loss"].get<double>(), m[0]["train_loss"].get<double>());
  json cfg = json::parse(slurp(path("run") / "config.json"));
  for (const char* k : {"data", "epochs", "batch", "lr", "seed", "device", "out", "resume", "threads"})
    EXPECT_TRUE(cfg.contains(k)) << k;
  EXPECT_EQ(cfg["seed"], 3);
  auto model = io::load_safetensors((path("run") / "model.safetensors").string());
  EXPECT_EQ(model.tensors.at("layers.2.kernel").shape(), (Shape{128, 128}));
  EXPECT_EQ(model.metadata.at("epoch"), "2");
  // Not a terminal: one plain line per epoch on stderr.
  EXPECT_EQ(count_lines(r.err), 2) << r.err;
}

TEST_F(TrainMlpTool, ResumeGivesBitIdenticalLossesAndWeights) {
  ASSERT_EQ(run("--epochs 3 --out " + out("straight")).rc, 0);
  ASSERT_EQ(run("--epochs 1 --out " + out("split")).rc, 0);
  Result r = run("--epochs 3 --resume " + out("split") + " --out " + out("split"));
  ASSERT_EQ(r.rc, 0) << r.err;
  auto a = metrics("straight"), b = metrics("split");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    for (const char* k : {"train_loss", "train_acc", "test_loss", "test_acc"})
      EXPECT_EQ(a[i][k].get<double>(), b[i][k].get<double>()) << "epoch " << i + 1 << " " << k;
  auto wa = io::load_safetensors((path("straight") / "model.safetensors").string());
  auto wb = io::load_safetensors((path("split") / "model.safetensors").string());
  for (auto& [name, t] : wa.tensors) EXPECT_EQ(t.to_vector<float>(), wb.tensors.at(name).to_vector<float>()) << name;
  // Resuming into another folder carries the history over; a finished checkpoint cannot be
  // "resumed" to fewer epochs.
  ASSERT_EQ(run("--epochs 4 --resume " + out("split/model.safetensors") + " --out " + out("other")).rc, 0);
  auto c = metrics("other");
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[2]["test_loss"].get<double>(), b[2]["test_loss"].get<double>());
  r = run("--epochs 2 --resume " + out("split") + " --out " + out("split"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("has done 3 epochs already"), std::string::npos) << r.err;
}

TEST_F(TrainMlpTool, ResumeWithoutOutContinuesInTheResumedFolder) {
  ASSERT_EQ(run("--epochs 1 --out " + out("run")).rc, 0);
  Result r = run("--epochs 2 --json --resume " + out("run"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(metrics("run").size(), 2u);
  EXPECT_EQ(fs::path(json::parse(r.out)["outputs"]["model"].get<std::string>()).parent_path(), path("run"));
  EXPECT_FALSE(fs::exists(path("runs"))) << "--resume without --out wrote to the default runs/mlp";
  // --out still wins: the history goes on in the new folder, the resumed one stays as it was.
  ASSERT_EQ(run("--epochs 3 --resume " + out("run") + " --out " + out("next")).rc, 0);
  EXPECT_EQ(metrics("next").size(), 3u);
  EXPECT_EQ(metrics("run").size(), 2u);
}

TEST_F(TrainMlpTool, NanLossStopsAndKeepsTheLastGoodCheckpoint) {
  ASSERT_EQ(run("--epochs 1 --out " + out("run")).rc, 0);
  const std::string before = slurp(path("run") / "model.safetensors");
  // A huge learning rate blows the weights up within a few Adam steps of epoch 2.
  Result r = run("--epochs 3 --lr 1e30 --resume " + out("run") + " --out " + out("run"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  // The loss or a weight (whichever the guard sees first) goes bad in epoch 2.
  EXPECT_NE(r.err.find("NaN"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("epoch 2, step"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("training stopped. The last good checkpoint (epoch 1)"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(path("run") / "model.safetensors"), before);
  EXPECT_EQ(metrics("run").size(), 1u);
}

TEST_F(TrainMlpTool, MissingDataFolderIsOneLineAndExitOne) {
  Result r = run("--data " + out("nowhere") + " --out " + out("run"), false);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("nowhere"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tools/setup"), std::string::npos) << r.err;
}

TEST_F(TrainMlpTool, BadResumeIsOneLineAndExitOne) {
  Result r = run("--epochs 2 --resume " + out("nothing-here") + " --out " + out("run"));
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("nothing-here"), std::string::npos) << r.err;
}

TEST_F(TrainMlpTool, BadFlagsExitTwo) {
  for (const char* args : {"--epochs 0", "--epochs x", "--batch -3", "--lr 0", "--device tpu", "--threads -1",
                           "--no-such-flag", "extra-positional"}) {
    Result r = run(std::string(args) + " --out " + out("run"));
    EXPECT_EQ(r.rc, 2) << args << ": " << r.err;
    EXPECT_FALSE(fs::exists(path("run"))) << args;
  }
}
