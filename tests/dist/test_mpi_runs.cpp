// The `lowrank` program under `mpirun -np 2` against one process: data-parallel train-mlp and
// gpt2 train give the single-process losses and weights, a lora-experiment sweep the same
// results.json, and a killed rank ends the run within seconds with its last checkpoint intact.
// Skipped (and counted so by ctest) when the build has no MPI or mpirun is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/io/safetensors.h"
#include "support/byte_vocab.h"
#include "support/tool_runner.h"
#include "tools/dist/dist.h"

namespace fs = std::filesystem;
using lowrank::test::shell_quoted;
using lowrank::test::ToolResult;
using nlohmann::json;

using lowrank::test::read_bytes;

namespace {

// f32 sums over the ranks and over one batch add in another order: a few ulps per step, which
// Adam's normalised update carries on. 1e-6 of the values' scale is the issue's bound.
constexpr double kRelTol = 1e-6;

bool have_mpirun() {
  return std::system("command -v mpirun >/dev/null 2>&1") == 0;
}

// mpirun as root in a container: --allow-run-as-root, and more ranks than cores allowed.
std::string mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(ranks) + " ";
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::istringstream in(read_bytes(p));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Two safetensors files hold the same tensors, and the same numbers: ‖a − b‖ ≤ kRelTol·‖b‖ over
// all of them together, and per tensor unless `whole_only`. (A GPT-2's attention key bias has a
// true gradient of 0, softmax being blind to it: what it gets is rounding noise, which Adam scales
// up to steps of the learning rate's size, so it differs between any two summation orders.)
void expect_same_weights(const fs::path& a, const fs::path& b, bool whole_only = false) {
  auto ta = lowrank::io::load_safetensors(a.string()).tensors, tb = lowrank::io::load_safetensors(b.string()).tensors;
  ASSERT_EQ(ta.size(), tb.size());
  double diff2 = 0, norm2 = 0;
  for (const auto& [name, x] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    auto va = x.to(lowrank::DType::F64).to_vector<double>(),
         vb = tb.at(name).to(lowrank::DType::F64).to_vector<double>();
    ASSERT_EQ(va.size(), vb.size()) << name;
    double d2 = 0, n2 = 0;
    for (size_t i = 0; i < va.size(); ++i) d2 += (va[i] - vb[i]) * (va[i] - vb[i]), n2 += vb[i] * vb[i];
    diff2 += d2, norm2 += n2;
    if (!whole_only) {
      EXPECT_LE(std::sqrt(d2), kRelTol * std::sqrt(n2)) << name << ": |a - b| / |b| = " << std::sqrt(d2 / n2);
    }
  }
  EXPECT_LE(std::sqrt(diff2), kRelTol * std::sqrt(norm2))
      << "all tensors: |a - b| / |b| = " << std::sqrt(diff2 / norm2);
}

void expect_close(double a, double b, const std::string& what) {
  EXPECT_LE(std::abs(a - b), kRelTol * std::abs(b)) << what << ": " << a << " vs " << b;
}

class MpiRuns : public lowrank::test::ToolTest {
 protected:
  void SetUp() override {
    ToolTest::SetUp();
    if (!lowrank::dist::built_with_mpi()) GTEST_SKIP() << "this build has no MPI (LOWRANK_MPI)";
    if (!have_mpirun()) GTEST_SKIP() << "mpirun is not installed (tools/setup installs openmpi-bin)";
  }
  std::string p(const std::string& name) const { return shell_quoted((dir_ / name).string()); }
  // `lowrank args` under mpirun -np `ranks` (1: no mpirun at all).
  ToolResult run_ranks(int ranks, const std::string& args) const {
    if (ranks == 1) return run(args);
    const std::string bin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";
    const std::string cmd =
        mpirun(ranks) + shell_quoted(bin) + " " + args + " >" + p("stdout.txt") + " 2>" + p("stderr.txt");
    const int status = std::system(cmd.c_str());
    ToolResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_bytes(dir_ / "stdout.txt"), r.err = read_bytes(dir_ / "stderr.txt");
    return r;
  }
};

// 5 optimizer steps (one a epoch: 64 samples, global batch 64): 2 ranks × 32 rows = 1 × 64.
TEST_F(MpiRuns, TrainMlpTwoRanksEqualOneProcess) {
  const std::string flags = " --train-limit 64 --test-limit 100 --epochs 5 --batch 64 --threads 1 --quiet --json";
  ToolResult one = run_ranks(1, "train-mlp --out " + p("one") + flags);
  ASSERT_EQ(one.rc, 0) << one.err;
  ToolResult two = run_ranks(2, "train-mlp --out " + p("two") + flags);
  ASSERT_EQ(two.rc, 0) << two.err;
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'), 1) << "rank 0 alone reports: " << two.out;
  auto m1 = read_jsonl(dir_ / "one" / "metrics.jsonl"), m2 = read_jsonl(dir_ / "two" / "metrics.jsonl");
  ASSERT_EQ(m1.size(), 5u);
  ASSERT_EQ(m2.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    expect_close(m2[i]["train_loss"].get<double>(), m1[i]["train_loss"].get<double>(),
                 "train loss " + std::to_string(i));
    expect_close(m2[i]["test_loss"].get<double>(), m1[i]["test_loss"].get<double>(), "test loss " + std::to_string(i));
    EXPECT_EQ(m2[i]["train_acc"], m1[i]["train_acc"]);
  }
  expect_same_weights(dir_ / "two" / "model.safetensors", dir_ / "one" / "model.safetensors");
}

TEST_F(MpiRuns, ABatchThatDoesNotSplitIsAUsageError) {
  ToolResult r = run_ranks(2, "train-mlp --out " + p("x") + " --train-limit 64 --epochs 1 --batch 63 --quiet");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("must divide by the 2 ranks"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n') >= 1, true);
}

// A toy GPT-2 (one layer, 16 wide, byte vocabulary): 5 steps at global batch 4.
class MpiGpt2 : public MpiRuns {
 protected:
  void SetUp() override {
    MpiRuns::SetUp();
    if (IsSkipped()) return;
    lowrank::test::write_byte_vocab(dir_ / "vocab");
    std::string text;
    for (int i = 0; i < 40; ++i) text += "Fortune " + std::to_string(i) + ": the cat sat on the mat.\n%\n";
    std::ofstream(dir_ / "corpus.txt") << text;
    std::ofstream(dir_ / "tiny.json")
        << R"({"n_layer": 1, "n_head": 2, "n_embd": 16, "n_ctx": 16, "vocab_size": 257, "dropout": 0.0})";
  }
  std::string train_flags() const {
    return " --config " + p("tiny.json") + " --data " + p("corpus.txt") + " --vocab " + p("vocab") +
           " --steps 5 --batch 4 --seq-len 16 --lr 1e-2 --warmup 1 --log-every 1 --val-every 5 --val-batches 1 "
           "--val-fraction 0.2 --threads 1 --quiet --json";
  }
};

TEST_F(MpiGpt2, TrainTwoRanksEqualOneProcess) {
  ToolResult one = run_ranks(1, "gpt2 train --out " + p("one") + train_flags());
  ASSERT_EQ(one.rc, 0) << one.err;
  ToolResult two = run_ranks(2, "gpt2 train --out " + p("two") + train_flags());
  ASSERT_EQ(two.rc, 0) << two.err;
  auto m1 = read_jsonl(dir_ / "one" / "metrics.jsonl"), m2 = read_jsonl(dir_ / "two" / "metrics.jsonl");
  ASSERT_EQ(m1.size(), m2.size());
  int train_records = 0;
  for (size_t i = 0; i < m1.size(); ++i) {
    const char* key = m1[i].contains("train_loss") ? "train_loss" : "val_loss";
    train_records += m1[i].contains("train_loss");
    ASSERT_TRUE(m2[i].contains(key)) << m2[i].dump();
    expect_close(m2[i][key].get<double>(), m1[i][key].get<double>(), std::string(key) + " record " + std::to_string(i));
    EXPECT_EQ(m2[i]["tokens"], m1[i]["tokens"]);
  }
  EXPECT_EQ(train_records, 5);
  expect_same_weights(dir_ / "two" / "model.safetensors", dir_ / "one" / "model.safetensors", /*whole_only=*/true);
}

// results.json of a small sweep (2 ranks × 2 seeds of LoRA, 2 of compression, SVD) is the same on
// two ranks as on one, but for the timings; so are the adapters' files.
TEST_F(MpiRuns, LoraExperimentSweepWritesTheSameResults) {
  const std::string flags =
      " --base-epochs 1 --epochs 1 --ranks 2,4 --seeds 0,1 --train-limit 128 --test-limit 100 --batch 32 --quiet "
      "--json";
  ToolResult one = run_ranks(1, "lora-experiment --out " + p("one") + flags);
  ASSERT_EQ(one.rc, 0) << one.err;
  ToolResult two = run_ranks(2, "lora-experiment --out " + p("two") + flags);
  ASSERT_EQ(two.rc, 0) << two.err;
  // The same numbers; only the timings and the folder names differ.
  std::function<void(json&)> drop_timings = [&](json& j) {
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end();)
        if (it.key() == "seconds")
          it = j.erase(it);
        else
          drop_timings(*it), ++it;
    } else if (j.is_array()) {
      for (json& e : j) drop_timings(e);
    } else if (j.is_string()) {
      std::string s = j.get<std::string>();
      for (const std::string& d : {(dir_ / "one").string(), (dir_ / "two").string()})
        if (auto at = s.find(d); at != std::string::npos) s.replace(at, d.size(), "OUT");
      j = s;
    }
  };
  json r1 = json::parse(read_bytes(dir_ / "one" / "results.json")),
       r2 = json::parse(read_bytes(dir_ / "two" / "results.json"));
  drop_timings(r1);
  drop_timings(r2);
  EXPECT_TRUE(r1 == r2) << "results.json differs";
  ASSERT_EQ(r1["runs"].size(), 8u);
  for (const char* a : {"lora_r2_s0", "lora_r4_s1", "compress_r4_s0"})
    EXPECT_EQ(read_bytes(dir_ / "one" / "adapters" / a / "adapter_model.safetensors"),
              read_bytes(dir_ / "two" / "adapters" / a / "adapter_model.safetensors"))
        << a;
}

}  // namespace

namespace {

// The child processes of `parent` and the rank each one is (Open MPI's OMPI_COMM_WORLD_RANK).
std::map<int, pid_t> ranks_of(pid_t parent) {
  std::map<int, pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream st(e.path() / "stat");
    std::string stat;
    std::getline(st, stat);
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    std::string env = read_bytes(e.path() / "environ");
    const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
    size_t at = env.find(key);
    if (at != std::string::npos) out[std::atoi(env.c_str() + at + key.size())] = std::stoi(name);
  }
  return out;
}

// The newest checkpoint-<step> in a run folder (-1: none yet).
int64_t newest_checkpoint(const fs::path& run) {
  int64_t best = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("checkpoint-", 0) == 0 && n.find_first_not_of("0123456789", 11) == std::string::npos)
      best = std::max<int64_t>(best, std::stoll(n.substr(11)));
  }
  return best;
}

}  // namespace

// Rank 1 is killed (SIGKILL) in the middle of a run: mpirun and rank 0 end within seconds (no
// hang in the all-reduce), with a non-zero exit, and the last checkpoint resumes.
TEST_F(MpiRuns, AKilledRankEndsTheRunAndTheCheckpointSurvives) {
  const std::string bin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";
  const std::string cmd = "exec " + mpirun(2) + shell_quoted(bin) + " train-mlp --out " + p("run") +
                          " --train-limit 640 --test-limit 100 --batch 64 --epochs 1000 --threads 1 --quiet >" +
                          p("stdout.txt") + " 2>" + p("stderr.txt");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  using clock = std::chrono::steady_clock;
  auto waited = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  // Two epochs' checkpoints: the kill lands in the middle of training, after a commit.
  const clock::time_point start = clock::now();
  while (waited(start) < 120 && newest_checkpoint(dir_ / "run") < 20)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::map<int, pid_t> ranks = ranks_of(pid);
  if (newest_checkpoint(dir_ / "run") < 20 || !ranks.count(1)) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    FAIL() << "the run did not reach its second checkpoint, or rank 1 was not found: "
           << read_bytes(dir_ / "stderr.txt");
  }
  ASSERT_EQ(kill(ranks.at(1), SIGKILL), 0);
  const clock::time_point killed = clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && waited(killed) < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (done == 0) kill(pid, SIGKILL), waitpid(pid, &status, 0);
  const double seconds = waited(killed);
  EXPECT_LT(seconds, 10.0) << "mpirun took this long to end after rank 1 died";
  EXPECT_TRUE(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
  const std::string err = read_bytes(dir_ / "stderr.txt");
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;
  const std::string st = read_bytes("/proc/" + std::to_string(ranks.at(0)) + "/stat");
  const size_t close = st.rfind(')');
  EXPECT_TRUE(st.empty() || (close != std::string::npos && st.substr(close + 2, 1) == "Z"))
      << "rank 0 still runs: " << st;
  // The newest checkpoint resumes in one process, for one more epoch.
  const int64_t epochs = newest_checkpoint(dir_ / "run") / 10;
  ASSERT_GE(epochs, 2);
  ToolResult r = run("train-mlp --resume " + p("run") + " --train-limit 640 --test-limit 100 --batch 64 --epochs " +
                     std::to_string(epochs + 1) + " --threads 1 --quiet --json");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"resumed_from_epoch\":" + std::to_string(epochs)), std::string::npos) << r.out;
}
