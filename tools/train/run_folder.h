// A run folder and its checkpoints. A checkpoint is a folder `checkpoint-<step>` (Hugging Face
// Trainer's name) filled under a temporary name and renamed into place, so a kill at any instant
// leaves the previous checkpoint or the new one, never a mix. After each commit the files users
// and other subcommands read (model.safetensors, ...) are linked into the run folder itself, so
// `--model runs/gpt2` and `--base runs/lora-experiment/base` keep working.
//
//   runs/gpt2/
//     config.json  metrics.jsonl  model.safetensors  optimizer.safetensors  (the latest checkpoint's)
//     checkpoint-300/  model.safetensors  optimizer.safetensors  trainer_state.json  ...
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace lowrank::train {

inline constexpr const char* kTrainerStateFile = "trainer_state.json";
inline constexpr const char* kMetricsFile = "metrics.jsonl";

// A committed checkpoint, as found on disk.
struct Checkpoint {
  std::string dir;      // the checkpoint-<step> folder
  std::string run_dir;  // the run folder holding it
  int64_t step = 0;
  nlohmann::json trainer_state;  // trainer_state.json: command, step, seconds, history, state

  // dir/name; throws naming the checkpoint when the file is missing.
  std::string file(const std::string& name) const;
  // What the run's save hook stored for its resume (trainer_state["state"]).
  const nlohmann::json& state() const;
};

// The checkpoint `path` names: a checkpoint-<step> folder, a run folder (its newest checkpoint),
// or a file in either (model.safetensors). `command` and `flag` name the subcommand and the
// flag in the one-line error when there is none.
Checkpoint find_checkpoint(const std::string& path, const std::string& command, const std::string& flag = "--resume");

// The folder a run writes to: --out when given, else the run folder --resume continues, else the
// subcommand's default.
std::string run_dir_for(const std::string& out, const std::string& resume, const std::string& default_dir);

// Gives a checkpoint's files their paths while it is being written.
class CheckpointWriter {
 public:
  CheckpointWriter(std::string dir, int64_t step) : dir_(std::move(dir)), step_(step) {}
  const std::string& dir() const { return dir_; }  // the temporary folder, renamed into place on commit
  std::string path(const std::string& file) const;
  int64_t step() const { return step_; }
  // The run's own resume state (loader position, random streams, ...): stored in
  // trainer_state.json, handed back by Checkpoint::state().
  nlohmann::json& state() { return state_; }
  const nlohmann::json& state() const { return state_; }

 private:
  std::string dir_;
  int64_t step_;
  nlohmann::json state_ = nlohmann::json::object();
};

struct RunFolderOptions {
  std::string command;       // the subcommand, for messages ("gpt2 train")
  std::string resume;        // --resume as given (empty: a fresh run)
  bool overwrite = false;    // --overwrite: replace an earlier run in the folder
  int keep_checkpoints = 1;  // the newest ones kept; older ones are removed after a commit
  // Files of each committed checkpoint that are linked into the run folder (hard links: no copy).
  std::vector<std::string> exports = {"model.safetensors", "optimizer.safetensors"};
};

class RunFolder {
 public:
  // Creates `dir` when needed and removes temporaries a killed save left (names ending in
  // .tmp.<pid>.<n> whose process is gone). A fresh run into a folder that holds an earlier run
  // (a checkpoint, model, optimizer or metrics file) is refused with a UsageError naming the
  // folder, --resume and --overwrite, unless `overwrite`; so is continuing another folder's run
  // into it. With `resume`, finds the checkpoint to start from (resume_from()).
  RunFolder(std::string dir, RunFolderOptions options);

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& file) const;
  const RunFolderOptions& options() const { return options_; }
  const std::optional<Checkpoint>& resume_from() const { return resume_from_; }

  // With --overwrite: deletes the earlier run's checkpoints, exported files and metrics, once (later
  // calls do nothing). Trainer::run() calls it; call it earlier to replace the run's files in order,
  // but after the new run's inputs are loaded (an --init may live in this very folder).
  void begin();
  // Writes checkpoint-<step> as one unit: `fill` writes the files into a temporary folder, which is
  // synced and renamed into place; then the exports are linked into the run folder and older
  // checkpoints (and any from an overwritten run past `step`) are removed. Returns its folder.
  std::string commit(int64_t step, const std::function<void(CheckpointWriter&)>& fill);
  // The newest committed checkpoint of this folder, if any.
  std::optional<Checkpoint> latest() const;

  // Atomic writes of a file in the run folder.
  void write_text(const std::string& file, const std::string& text) const;
  // metrics.jsonl: one JSON object per line.
  void write_metrics(const std::vector<nlohmann::json>& records) const;
  // Removes entries named <anything>.tmp.<pid>.<n> whose process no longer runs.
  void remove_stale_temporaries() const;

 private:
  std::vector<std::pair<int64_t, std::string>> checkpoints() const;  // (step, folder), ascending

  std::string dir_;
  RunFolderOptions options_;
  std::optional<Checkpoint> resume_from_;
  bool begun_ = false;
};

// Every checkpoint-<step> folder in `dir`, ascending by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

}  // namespace lowrank::train
