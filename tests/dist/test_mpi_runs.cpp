// The `lowrank` program under `mpirun -np 2` against one process: data-parallel train-mlp, gpt2
// train and gpt2 lora give the single-process losses and weights (gpt2 lora also across a resume on
// 2 ranks), lora-experiment and gpt2 lora-experiment sweeps the same results and adapters, a killed
// rank ends the run within seconds with its last checkpoint intact, and a hung rank ends it through
// the watchdog's timeout.
// Skipped (and counted so by ctest) when the build has no MPI or mpirun is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

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

// Two gpt2 runs' metrics.jsonl: the same records, losses to kRelTol, the same token counts, and
// `train_records` training records.
void expect_same_gpt2_records(const std::vector<json>& m2, const std::vector<json>& m1, int train_records) {
  ASSERT_EQ(m1.size(), m2.size());
  int train = 0;
  for (size_t i = 0; i < m1.size(); ++i) {
    const char* key = m1[i].contains("train_loss") ? "train_loss" : "val_loss";
    train += m1[i].contains("train_loss");
    ASSERT_TRUE(m2[i].contains(key)) << m2[i].dump();
    expect_close(m2[i][key].get<double>(), m1[i][key].get<double>(), std::string(key) + " record " + std::to_string(i));
    EXPECT_EQ(m2[i]["tokens"], m1[i]["tokens"]);
    EXPECT_EQ(m2[i]["step"], m1[i]["step"]);
  }
  EXPECT_EQ(train, train_records);
}
void expect_same_gpt2_metrics(const fs::path& a, const fs::path& b, int train_records) {
  expect_same_gpt2_records(read_jsonl(a), read_jsonl(b), train_records);
}

// A sweep's results.json in `run` without what may differ between two runs of it: the timings
// ("seconds"), and the output folders `outs` (each named OUT).
json comparable_results(const fs::path& run, const std::vector<fs::path>& outs) {
  std::function<void(json&)> strip = [&](json& j) {
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end();)
        if (it.key() == "seconds")
          it = j.erase(it);
        else
          strip(*it), ++it;
    } else if (j.is_array()) {
      for (json& e : j) strip(e);
    } else if (j.is_string()) {
      std::string s = j.get<std::string>();
      for (const fs::path& d : outs)
        if (auto at = s.find(d.string()); at != std::string::npos) s.replace(at, d.string().size(), "OUT");
      j = s;
    }
  };
  json r = json::parse(read_bytes(run / "results.json"));
  strip(r);
  return r;
}

// Two sweeps' output folders `a` and `b` wrote the same results.json (comparable_results) with
// `runs` runs, and the same bytes in each of `files` (relative to the folders); returns a's
// results.json as comparable_results gives it.
json expect_same_sweep(const fs::path& a, const fs::path& b, size_t runs, const std::vector<std::string>& files) {
  const json ra = comparable_results(a, {a, b}), rb = comparable_results(b, {a, b});
  EXPECT_TRUE(ra == rb) << "results.json differs";
  EXPECT_EQ(ra["runs"].size(), runs);
  for (const std::string& f : files) EXPECT_EQ(read_bytes(a / f), read_bytes(b / f)) << f;
  return ra;
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
  // `lowrank command --out one flags` in one process, then `--out two` on 2 ranks.
  std::pair<ToolResult, ToolResult> run_one_and_two(const std::string& command, const std::string& flags) const {
    ToolResult one = run_ranks(1, command + " --out " + p("one") + flags);
    return {one, run_ranks(2, command + " --out " + p("two") + flags)};
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
  // A base for gpt2 lora: the toy model after 2 steps of gpt2 train, in base/.
  void make_base() {
    ToolResult b = run_ranks(1, "gpt2 train --out " + p("base") + " --config " + p("tiny.json") + " --data " +
                                    p("corpus.txt") + " --vocab " + p("vocab") +
                                    " --steps 2 --batch 4 --seq-len 16 --warmup 1 --val-fraction 0.2 --threads 1 "
                                    "--quiet");
    ASSERT_EQ(b.rc, 0) << b.err;
  }
  // gpt2 lora on the base: rank-2 adapters on query and value, global batch 4, no dropout (each
  // rank draws its own masks: with dropout the runs are alike in law, not in numbers).
  std::string lora_flags(int64_t steps = 5, int64_t batch = 4, int64_t val_every = 5) const {
    return " --model " + p("base") + " --data " + p("corpus.txt") + " --vocab " + p("vocab") + " --steps " +
           std::to_string(steps) + " --batch " + std::to_string(batch) + " --val-every " + std::to_string(val_every) +
           " --seq-len 16 --rank 2 --lr 1e-2 --warmup 1 --log-every 1 --val-batches 1 --val-fraction 0.2 "
           "--no-compare-full --threads 1 --quiet --json";
  }
};

TEST_F(MpiGpt2, TrainTwoRanksEqualOneProcess) {
  ToolResult one = run_ranks(1, "gpt2 train --out " + p("one") + train_flags());
  ASSERT_EQ(one.rc, 0) << one.err;
  ToolResult two = run_ranks(2, "gpt2 train --out " + p("two") + train_flags());
  ASSERT_EQ(two.rc, 0) << two.err;
  expect_same_gpt2_metrics(dir_ / "two" / "metrics.jsonl", dir_ / "one" / "metrics.jsonl", 5);
  expect_same_weights(dir_ / "two" / "model.safetensors", dir_ / "one" / "model.safetensors", /*whole_only=*/true);
}

// Only the adapters' gradients travel; 2 ranks × 2 rows give 1 process × 4 rows, and a run stopped
// at step 3 and resumed on 2 ranks gives the uninterrupted 2-rank run.
TEST_F(MpiGpt2, LoraTwoRanksEqualOneProcess) {
  make_base();
  if (HasFatalFailure()) return;
  ToolResult one = run_ranks(1, "gpt2 lora --out " + p("one") + lora_flags());
  ASSERT_EQ(one.rc, 0) << one.err;
  ToolResult two = run_ranks(2, "gpt2 lora --out " + p("two") + lora_flags());
  ASSERT_EQ(two.rc, 0) << two.err;
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'), 1) << "rank 0 alone reports: " << two.out;
  expect_same_gpt2_metrics(dir_ / "two" / "metrics.jsonl", dir_ / "one" / "metrics.jsonl", 5);
  expect_same_weights(dir_ / "two" / "adapter_model.safetensors", dir_ / "one" / "adapter_model.safetensors");
  // The base's weights never moved, and the adapters did.
  const auto a = lowrank::io::load_safetensors((dir_ / "two" / "adapter_model.safetensors").string()).tensors;
  double norm_b = 0;
  for (const auto& [name, t] : a)
    if (name.find("lora_B") != std::string::npos)
      for (double v : t.to(lowrank::DType::F64).to_vector<double>()) norm_b += v * v;
  EXPECT_GT(norm_b, 0) << "lora_B starts at 0 and must have been trained";

  ToolResult part = run_ranks(2, "gpt2 lora --out " + p("part") + " --stop-at 3" + lora_flags());
  ASSERT_EQ(part.rc, 0) << part.err;
  ASSERT_TRUE(fs::exists(dir_ / "part" / "checkpoint-3")) << part.err;
  ToolResult rest = run_ranks(2, "gpt2 lora --resume " + p("part") + lora_flags());
  ASSERT_EQ(rest.rc, 0) << rest.err;
  // The stop at step 3 validated there; the rest is the uninterrupted run's.
  std::vector<json> resumed = read_jsonl(dir_ / "part" / "metrics.jsonl");
  EXPECT_EQ(std::erase_if(resumed, [](const json& j) { return j.contains("val_loss") && j["step"] == 3; }), 1u);
  expect_same_gpt2_records(resumed, read_jsonl(dir_ / "two" / "metrics.jsonl"), 5);
  expect_same_weights(dir_ / "part" / "adapter_model.safetensors", dir_ / "two" / "adapter_model.safetensors");
}

TEST_F(MpiGpt2, LoraBatchThatDoesNotSplitIsAUsageError) {
  make_base();
  if (HasFatalFailure()) return;
  ToolResult r = run_ranks(2, "gpt2 lora --out " + p("x") + lora_flags(5, 3));
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("gpt2 lora: --batch 3 is the global batch and must divide by the 2 ranks"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "x" / "metrics.jsonl"));
}

// results.json of a small sweep (2 ranks × 2 seeds of LoRA, 2 of compression, SVD) is the same on
// two ranks as on one, but for the timings; so are the adapters' files.
TEST_F(MpiRuns, LoraExperimentSweepWritesTheSameResults) {
  const std::string flags =
      " --base-epochs 1 --epochs 1 --ranks 2,4 --seeds 0,1 --train-limit 128 --test-limit 100 --batch 32 --threads 1 "
      "--quiet "
      "--json";
  const auto [one, two] = run_one_and_two("lora-experiment", flags);
  ASSERT_EQ(one.rc, 0) << one.err;
  ASSERT_EQ(two.rc, 0) << two.err;
  // The same numbers; only the timings and the folder names differ.
  std::vector<std::string> adapters;
  for (const char* a : {"lora_r2_s0", "lora_r4_s1", "compress_r4_s0"})
    adapters.push_back(std::string("adapters/") + a + "/adapter_model.safetensors");
  expect_same_sweep(dir_ / "one", dir_ / "two", 8, adapters);
}

// gpt2 lora-experiment on 2 ranks writes what one process writes: results.json's numbers (but for
// the timings), results.md, the figures and every adapter's files, byte for byte; rank 1 ran its
// share of the 10 jobs (2 ranks × 2 seeds of lora; compress, pissa and svd per rank), rank 0
// alone printed the report, and a stale OUT.partial was emptied first.
TEST_F(MpiGpt2, Gpt2LoraExperimentSweepWritesTheSameResults) {
  make_base();
  if (HasFatalFailure()) return;
  const std::string flags = " --base " + p("base") +
                            " --ranks 1,4 --seeds 0,1 --steps 4 --warmup 1 --batch 2 --seq-len 8 --val-windows 4 "
                            "--threads 1 --json";
  // What a killed earlier run left in the partial folder must not end up in the experiment.
  fs::create_directories(dir_ / "two.partial" / "adapters" / "lora_r8_s0");
  const auto [one, two] = run_one_and_two("gpt2 lora-experiment", flags);
  ASSERT_EQ(one.rc, 0) << one.err;
  ASSERT_EQ(two.rc, 0) << two.err;
  EXPECT_FALSE(fs::exists(dir_ / "two" / "adapters" / "lora_r8_s0"));
  EXPECT_FALSE(fs::exists(dir_ / "two.partial"));
  EXPECT_NE(two.err.find("[rank 1] "), std::string::npos) << "rank 1 ran no job: " << two.err;
  EXPECT_TRUE(json::accept(two.out)) << "rank 0 alone prints one JSON object: " << two.out;
  std::vector<std::string> files = {"results.md"};
  const json j1 = comparable_results(dir_ / "one", {dir_ / "one"});
  for (const json& f : j1["figures"]) files.push_back(f.get<std::string>());
  for (const json& x : j1["runs"])
    for (const char* f : {"adapter_model.safetensors", "adapter_config.json"})
      files.push_back(x["adapter_dir"].get<std::string>() + "/" + f);
  const json r = expect_same_sweep(dir_ / "one", dir_ / "two", 10, files);
  EXPECT_EQ(r["figures"].size(), 6u) << r["figures"].dump();  // loss vs rank per variant, φ by rank and by seed
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

// mpirun -np 2 lowrank `args` in the background, its output to the test's folder: mpirun's pid
// (`env`: VAR=value for every rank).
pid_t launch(const fs::path& dir, const std::string& args, const std::string& env = "") {
  const std::string bin = std::string(LOWRANK_BINARY_DIR) + "/tools/lowrank";
  const std::string cmd = "exec " + mpirun(2) + (env.empty() ? "" : "-x " + env + " ") + shell_quoted(bin) + " " +
                          args + " >" + shell_quoted((dir / "stdout.txt").string()) + " 2>" +
                          shell_quoted((dir / "stderr.txt").string());
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The data and batch of the long train-mlp run the kill tests launch (a checkpoint an epoch).
const std::string kLongMlpFlags = " --train-limit 640 --test-limit 100 --batch 64";

// train-mlp for 1000 epochs into `dir`/run under mpirun -np 2 in the background: mpirun's pid.
pid_t launch_long_mlp(const fs::path& dir) {
  return launch(dir, "train-mlp --out " + shell_quoted((dir / "run").string()) + kLongMlpFlags +
                         " --epochs 1000 --threads 1 --quiet");
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Waits (up to 180 s) until `run` holds a checkpoint of `step` steps or more and mpirun's ranks are
// found; false (mpirun killed) otherwise.
bool reach_checkpoint(pid_t mpirun_pid, const fs::path& run, int64_t step, std::map<int, pid_t>& ranks) {
  const Clock::time_point start = Clock::now();
  while (since(start) < 180 && newest_checkpoint(run) < step)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ranks = ranks_of(mpirun_pid);
  if (newest_checkpoint(run) >= step && ranks.count(0) && ranks.count(1)) return true;
  kill(mpirun_pid, SIGKILL);
  waitpid(mpirun_pid, nullptr, 0);
  return false;
}

// Waits (up to 60 s, then kills it) for mpirun to end: its wait status and the seconds waited.
std::pair<int, double> wait_end(pid_t mpirun_pid) {
  const Clock::time_point start = Clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(mpirun_pid, &status, WNOHANG)) == 0 && since(start) < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double seconds = since(start);
  if (done == 0) kill(mpirun_pid, SIGKILL), waitpid(mpirun_pid, &status, 0);
  return {status, seconds};
}

// A process that has ended (gone, or a zombie nobody reaped).
bool ended(pid_t pid) {
  const std::string st = read_bytes("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = st.rfind(')');
  return st.empty() || (close != std::string::npos && st.substr(close + 2, 1) == "Z");
}

}  // namespace

// Rank 1 is killed (SIGKILL) in the middle of a run: mpirun and rank 0 end within seconds (no
// hang in the all-reduce), with a non-zero exit, and the last checkpoint resumes.
TEST_F(MpiRuns, AKilledRankEndsTheRunAndTheCheckpointSurvives) {
  const pid_t pid = launch_long_mlp(dir_);
  ASSERT_GE(pid, 0);
  // Two epochs' checkpoints: the kill lands in the middle of training, after a commit.
  std::map<int, pid_t> ranks;
  ASSERT_TRUE(reach_checkpoint(pid, dir_ / "run", 20, ranks))
      << "the run did not reach its second checkpoint, or its ranks were not found: "
      << read_bytes(dir_ / "stderr.txt");
  ASSERT_EQ(kill(ranks.at(1), SIGKILL), 0);
  const auto [status, seconds] = wait_end(pid);
  EXPECT_LT(seconds, 10.0) << "mpirun took this long to end after rank 1 died";
  EXPECT_TRUE(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
  const std::string err = read_bytes(dir_ / "stderr.txt");
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;
  EXPECT_TRUE(ended(ranks.at(0))) << "rank 0 still runs";
  // The newest checkpoint resumes in one process, for one more epoch.
  const int64_t epochs = newest_checkpoint(dir_ / "run") / 10;
  ASSERT_GE(epochs, 2);
  ToolResult r = run("train-mlp --resume " + p("run") + kLongMlpFlags + " --epochs " + std::to_string(epochs + 1) +
                     " --threads 1 --quiet --json");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"resumed_from_epoch\":" + std::to_string(epochs)), std::string::npos) << r.out;
}

// gpt2 lora on 2 ranks: rank 1 killed after the checkpoint of step 40 ends the run within seconds,
// and the newest checkpoint resumes on 2 ranks.
TEST_F(MpiGpt2, AKilledRankEndsALoraRunAndTheCheckpointSurvives) {
  make_base();
  if (HasFatalFailure()) return;
  const std::string flags = lora_flags(100000, 4, 0) + " --checkpoint-every 20";
  const pid_t pid = launch(dir_, "gpt2 lora --out " + p("run") + flags);
  ASSERT_GE(pid, 0);
  std::map<int, pid_t> ranks;
  ASSERT_TRUE(reach_checkpoint(pid, dir_ / "run", 40, ranks))
      << "the run did not reach its checkpoint of step 40: " << read_bytes(dir_ / "stderr.txt");
  ASSERT_EQ(kill(ranks.at(1), SIGKILL), 0);
  const auto [status, seconds] = wait_end(pid);
  EXPECT_LT(seconds, 10.0) << "mpirun took this long to end after rank 1 died";
  EXPECT_TRUE(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
  EXPECT_NE(read_bytes(dir_ / "stderr.txt").find("rank 1"), std::string::npos) << read_bytes(dir_ / "stderr.txt");
  EXPECT_TRUE(ended(ranks.at(0))) << "rank 0 still runs";
  const int64_t step = newest_checkpoint(dir_ / "run");
  ASSERT_GE(step, 40);
  ToolResult r = run_ranks(2, "gpt2 lora --resume " + p("run") + lora_flags(step + 2, 4, 0) + " --checkpoint-every 20");
  EXPECT_EQ(r.rc, 0) << r.err;
  const auto m = read_jsonl(dir_ / "run" / "metrics.jsonl");
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(m.back()["step"], step + 2) << m.back().dump();
}

// Rank 1 stops (SIGSTOP: alive, but answers nothing; mpirun sees nothing wrong): with
// LOWRANK_DIST_TIMEOUT=2, rank 0's watchdog ends it 2 s into its wait in the next collective,
// with one line that says why, and mpirun ends the rest.
TEST_F(MpiGpt2, AHungRankEndsTheRunAfterTheTimeout) {
  make_base();
  if (HasFatalFailure()) return;
  const pid_t pid = launch(dir_, "gpt2 lora --out " + p("run") + lora_flags(100000, 4, 0) + " --checkpoint-every 20",
                           "LOWRANK_DIST_TIMEOUT=2");
  ASSERT_GE(pid, 0);
  std::map<int, pid_t> ranks;
  ASSERT_TRUE(reach_checkpoint(pid, dir_ / "run", 20, ranks)) << read_bytes(dir_ / "stderr.txt");
  ASSERT_EQ(kill(ranks.at(1), SIGSTOP), 0);
  const auto [status, seconds] = wait_end(pid);
  kill(ranks.at(1), SIGKILL);  // whatever mpirun did with the stopped rank
  kill(ranks.at(1), SIGCONT);
  EXPECT_LT(seconds, 2.0 + 10.0) << "the run took this long to end after rank 1 hung";
  EXPECT_TRUE(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
  const std::string err = read_bytes(dir_ / "stderr.txt");
  EXPECT_NE(err.find("lowrank: error: rank 0 of 2: waited "), std::string::npos) << err;
  EXPECT_NE(err.find("over LOWRANK_DIST_TIMEOUT=2 (a rank has hung or died); ending this rank"), std::string::npos)
      << err;
  EXPECT_TRUE(ended(ranks.at(0))) << "rank 0 still runs";
  EXPECT_GE(newest_checkpoint(dir_ / "run"), 20);
}

// mpirun itself is killed (SIGKILL): both ranks end within seconds. (Open MPI's ranks notice the
// lost launcher themselves: with the watchdog switched off this passes too; the watchdog's launcher
// check is for launchers that do not.)
TEST_F(MpiRuns, AKilledLauncherEndsItsRanks) {
  const pid_t pid = launch_long_mlp(dir_);
  ASSERT_GE(pid, 0);
  std::map<int, pid_t> ranks;
  ASSERT_TRUE(reach_checkpoint(pid, dir_ / "run", 10, ranks)) << read_bytes(dir_ / "stderr.txt");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  waitpid(pid, nullptr, 0);
  const Clock::time_point killed = Clock::now();
  while (since(killed) < 20 && !(ended(ranks.at(0)) && ended(ranks.at(1))))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double seconds = since(killed);
  for (const auto& [r, rank_pid] : ranks)
    if (!ended(rank_pid)) kill(rank_pid, SIGKILL);
  EXPECT_LT(seconds, 10.0) << "the ranks ran on this long after mpirun died";
  EXPECT_GE(newest_checkpoint(dir_ / "run"), 10);
}
