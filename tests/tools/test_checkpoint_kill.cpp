// Kill test of checkpointing: `lowrank train-mlp` on a tiny data set is SIGKILLed at random moments
// (most of its time goes to writing and syncing a checkpoint per epoch), resumed each time, and
// must end with the losses and weights of a run never interrupted, with no temporary files left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/io/idx.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "support/files.h"
#include "support/tool_runner.h"

using namespace lowrank;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kEpochs = 12;
constexpr int kTrainSamples = 64, kBatch = 16;
constexpr int64_t kFinalStep = int64_t{kEpochs} * kTrainSamples / kBatch;  // optimizer steps of a whole run
// Enough kills to land in every phase of a checkpoint on average, within a time budget (each kill
// waits up to the length of a whole run).
constexpr int kMinKills = 10;
constexpr double kKillBudgetSeconds = 4.0;

void write_split(const fs::path& dir, const std::string& prefix, int64_t n, uint64_t seed) {
  NoGradGuard ng;
  std::vector<int64_t> lab(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) lab[static_cast<size_t>(i)] = i % 10;
  Tensor labels = Tensor::from_vector(lab, {n});
  Tensor img = mul(rand({n, 28, 28}, seed), 255.0).to(DType::U8);
  io::write_file_atomic((dir / (prefix + "-images-idx3-ubyte")).string(), io::encode_idx(img));
  io::write_file_atomic((dir / (prefix + "-labels-idx1-ubyte")).string(), io::encode_idx(labels.to(DType::U8)));
}

class CheckpointKill : public lowrank::test::ToolTest {
 protected:
  // Starts `lowrank train-mlp` with `args`, output to files in dir_; returns its pid.
  pid_t start(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank",
                                  "train-mlp",
                                  "--threads",
                                  "1",
                                  "--data",
                                  (dir_ / "data").string(),
                                  "--epochs",
                                  std::to_string(kEpochs),
                                  "--batch",
                                  std::to_string(kBatch)};
    argv.insert(argv.end(), args.begin(), args.end());
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::string log = (dir_ / "log.txt").string();
      if (!std::freopen(log.c_str(), "w", stdout) || !std::freopen(log.c_str(), "a", stderr)) ::_exit(127);
      std::vector<char*> cargs;
      for (const std::string& a : argv) cargs.push_back(const_cast<char*>(a.c_str()));
      cargs.push_back(nullptr);
      ::execv(cargs[0], cargs.data());
      ::_exit(127);
    }
    return pid;
  }
  static int wait_for(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }
  std::vector<json> metrics(const fs::path& run) const {
    std::vector<json> v;
    std::istringstream in(lowrank::test::read_bytes(run / "metrics.jsonl"));
    std::string line;
    while (std::getline(in, line)) v.push_back(json::parse(line));
    return v;
  }
  // The step of the newest committed checkpoint in `run`, -1 when there is none.
  static int64_t latest_checkpoint(const fs::path& run) {
    std::error_code ec;
    int64_t latest = -1;
    for (const auto& e : fs::directory_iterator(run, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("checkpoint-", 0) == 0 && name.find(".tmp.") == std::string::npos)
        latest = std::max<int64_t>(latest, std::stoll(name.substr(11)));
    }
    return latest;
  }
};

TEST_F(CheckpointKill, KilledAtRandomMomentsAndResumedEndsLikeAnUninterruptedRun) {
  fs::create_directories(dir_ / "data");
  write_split(dir_ / "data", "train", kTrainSamples, 1);
  write_split(dir_ / "data", "t10k", 20, 2);
  const fs::path straight = dir_ / "straight", killed = dir_ / "killed";

  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_for(start({"--out", straight.string()})), 0) << lowrank::test::read_bytes(dir_ / "log.txt");
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Kill, resume, kill, ... until the run completes; then start it over (--overwrite, whose
  // deletion of the old checkpoints is one more place to be killed) until enough kills landed.
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> when(0.0, run_seconds);
  const double budget = std::max(kKillBudgetSeconds, 3 * run_seconds);  // a loaded machine runs slower
  int kills = 0, finished = 0;
  bool complete = false;
  const auto k0 = std::chrono::steady_clock::now();
  auto next_args = [&] {
    std::vector<std::string> args{"--out", killed.string()};
    if (!complete && latest_checkpoint(killed) >= 0)
      args.insert(args.end(), {"--resume", killed.string()});
    else
      args.push_back("--overwrite");
    return args;
  };
  while (kills < kMinKills && std::chrono::duration<double>(std::chrono::steady_clock::now() - k0).count() < budget) {
    const pid_t pid = start(next_args());
    std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
    ::kill(pid, SIGKILL);
    const int rc = wait_for(pid);
    if (rc == -SIGKILL) {
      ++kills;
      // A kill after the last checkpoint was committed leaves a finished run, which --resume
      // rightly refuses to continue ("the run has done 12 epochs already"): start over instead.
      complete = latest_checkpoint(killed) == kFinalStep;
    } else {
      ASSERT_EQ(rc, 0) << "resuming from what a kill left failed: " << lowrank::test::read_bytes(dir_ / "log.txt");
      ++finished;
      complete = true;
    }
  }
  EXPECT_GE(kills, 2) << "the kills should land inside runs";
  if (!complete) {
    const int rc = wait_for(start(next_args()));
    ASSERT_EQ(rc, 0) << lowrank::test::read_bytes(dir_ / "log.txt");
  }

  auto a = metrics(straight), b = metrics(killed);
  ASSERT_EQ(a.size(), static_cast<size_t>(kEpochs));
  ASSERT_EQ(b.size(), static_cast<size_t>(kEpochs));
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* k : {"train_loss", "train_acc", "test_loss", "test_acc"})
      EXPECT_EQ(a[i][k].get<double>(), b[i][k].get<double>()) << "epoch " << i + 1 << " " << k;
  auto wa = io::load_safetensors((straight / "model.safetensors").string());
  auto wb = io::load_safetensors((killed / "model.safetensors").string());
  ASSERT_EQ(wa.tensors.size(), wb.tensors.size());
  for (auto& [name, t] : wa.tensors) EXPECT_EQ(t.to_vector<float>(), wb.tensors.at(name).to_vector<float>()) << name;

  // What kills left behind (temporary files and checkpoint folders) is gone after the next run.
  for (const auto& e : fs::recursive_directory_iterator(killed))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  std::cerr << "[ kill test ] " << kills << " kills, " << finished << " runs finished first, one run " << run_seconds
            << " s\n";
}

}  // namespace
