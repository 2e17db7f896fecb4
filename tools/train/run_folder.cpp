// RunFolder: refusing to overwrite a run, checkpoint commits by folder rename, exports by hard
// link, pruning, and the clean-up of temporaries that a killed process left behind.
#include "tools/train/run_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/io/json_util.h"
#include "core/io/safetensors.h"
#include "tools/train/setup.h"

namespace lowrank::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kCheckpointPrefix = "checkpoint-";
constexpr const char* kTrainerStateFormat = "lowrank-trainer";

// "checkpoint-<digits>" exactly; anything else (a temporary, a stray file) is not a checkpoint.
std::optional<int64_t> checkpoint_step(const std::string& name) {
  const std::string prefix = kCheckpointPrefix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  int64_t step = -1;
  const char* b = name.data() + prefix.size();
  const char* e = name.data() + name.size();
  if (*b < '0' || *b > '9') return std::nullopt;
  auto [end, ec] = std::from_chars(b, e, step);
  if (ec != std::errc() || end != e) return std::nullopt;
  return step;
}

// The same temporary naming as io::AtomicFileWriter: <target>.tmp.<pid>.<n>.
std::string temp_name(const fs::path& target) {
  static std::atomic<uint64_t> counter{0};
  return target.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// The pid of a name ending in .tmp.<pid>.<n>, or nullopt.
std::optional<long> temp_owner(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos) return std::nullopt;
  const std::string rest = name.substr(at + 5);
  const size_t dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size()) return std::nullopt;
  for (size_t i = 0; i < rest.size(); ++i)
    if (i != dot && (rest[i] < '0' || rest[i] > '9')) return std::nullopt;
  long pid = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, pid);
  if (ec != std::errc() || pid <= 0) return std::nullopt;
  return pid;
}

bool process_alive(long pid) {
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// Makes the entries of a folder (creations, renames) durable; a folder that cannot be opened only
// loses that guarantee.
void sync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

void sync_file(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// Renames `path` to a temporary name first, so a kill in the middle of deleting leaves a name
// that the next run clears away, never a half-deleted checkpoint under its real name.
void remove_entry(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return;
  const fs::path doomed = temp_name(path);
  if (::rename(path.c_str(), doomed.c_str()) != 0) {
    fs::remove_all(path, ec);
    return;
  }
  fs::remove_all(doomed, ec);
}

// Puts `src`'s content at `dst` atomically: a hard link (no copy) where the file system allows,
// else a copy; either under a temporary name, renamed over `dst`.
void export_file(const fs::path& src, const fs::path& dst) {
  const fs::path tmp = temp_name(dst);
  if (::link(src.c_str(), tmp.c_str()) != 0) {
    std::error_code ec;
    fs::copy_file(src, tmp, ec);
    LR_CHECK(!ec, "cannot copy {} to {}: {}", src.string(), tmp.string(), ec.message());
    sync_file(tmp);
  }
  if (::rename(tmp.c_str(), dst.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::error_code ec;
    fs::remove(tmp, ec);
    LR_FAIL("cannot rename {} to {}: {}", tmp.string(), dst.string(), why);
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
  return s;
}

bool same_folder(const std::string& a, const std::string& b) {
  std::error_code ec;
  const bool eq = fs::equivalent(a, b, ec);
  return !ec && eq;
}

}  // namespace

// ---- Checkpoint

std::string Checkpoint::file(const std::string& name) const {
  const fs::path p = fs::path(dir) / name;
  LR_CHECK(fs::is_regular_file(p), "checkpoint {} has no {}", dir, name);
  return p.string();
}

const json& Checkpoint::state() const {
  static const json empty = json::object();
  auto it = trainer_state.find("state");
  return it == trainer_state.end() ? empty : *it;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::error_code ec2;
    if (!e.is_directory(ec2)) continue;
    if (auto step = checkpoint_step(e.path().filename().string())) out.emplace_back(*step, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Checkpoint find_checkpoint(const std::string& path, const std::string& command, const std::string& flag) {
  std::error_code ec;
  LR_CHECK(fs::exists(path, ec), "{}: {} {}: no such file or folder", command, flag, path);
  fs::path p = path;
  if (!fs::is_directory(p, ec)) p = p.has_parent_path() ? p.parent_path() : fs::path(".");
  Checkpoint c;
  if (fs::is_regular_file(p / kTrainerStateFile, ec)) {
    c.dir = p.string();
    c.run_dir = fs::absolute(p, ec).parent_path().string();
  } else {
    auto all = list_checkpoints(p.string());
    LR_CHECK(!all.empty(),
             "{}: {} {}: no checkpoint there (a run folder holds checkpoint-<step> folders, each with {}; runs "
             "written before lowrank had them cannot be resumed)",
             command, flag, path, kTrainerStateFile);
    c.dir = all.back().second;
    c.run_dir = p.string();
  }
  const std::string state_file = (fs::path(c.dir) / kTrainerStateFile).string();
  LR_CHECK(fs::is_regular_file(state_file), "{}: {} {}: the checkpoint {} has no {}", command, flag, path, c.dir,
           kTrainerStateFile);
  std::ifstream in(state_file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  c.trainer_state = io::parse_json(text.str(), detail::format("{}: {} {}: {}", command, flag, path, state_file));
  LR_CHECK(c.trainer_state.is_object() && c.trainer_state.value("format", "") == kTrainerStateFormat,
           "{}: {} {}: {} is not a lowrank trainer state (no \"format\": \"{}\")", command, flag, path, state_file,
           kTrainerStateFormat);
  auto step = c.trainer_state.find("step");
  LR_CHECK(step != c.trainer_state.end() && step->is_number_integer() && step->get<int64_t>() >= 0,
           "{}: {} {}: {} has no step count", command, flag, path, state_file);
  c.step = step->get<int64_t>();
  if (auto named = checkpoint_step(fs::path(c.dir).filename().string()))
    LR_CHECK(*named == c.step, "{}: {} {}: {} says step {}, its folder name step {}", command, flag, path, state_file,
             c.step, *named);
  return c;
}

std::string run_dir_for(const std::string& out, const std::string& resume, const std::string& default_dir) {
  if (!out.empty()) return out;
  if (resume.empty()) return default_dir;
  std::error_code ec;
  fs::path p = resume;
  if (!fs::is_directory(p, ec)) p = p.has_parent_path() ? p.parent_path() : fs::path(".");
  // A checkpoint folder belongs to the run folder above it.
  if (fs::is_regular_file(p / kTrainerStateFile, ec) && checkpoint_step(p.filename().string()))
    p = p.has_parent_path() ? p.parent_path() : fs::path(".");
  return p.string();
}

std::string CheckpointWriter::path(const std::string& file) const {
  return (fs::path(dir_) / file).string();
}

// ---- RunFolder

RunFolder::RunFolder(std::string dir, RunFolderOptions options) : dir_(std::move(dir)), options_(std::move(options)) {
  const std::string& cmd = options_.command;
  LR_CHECK(!dir_.empty(), "{}: the output folder is empty", cmd);
  if (!options_.resume.empty()) resume_from_ = find_checkpoint(options_.resume, cmd);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  LR_CHECK(fs::is_directory(dir_), "{}: cannot create the output folder {}{}", cmd, dir_,
           ec ? ": " + ec.message() : std::string());
  const bool resume_here = resume_from_ && same_folder(resume_from_->run_dir, dir_);
  if (resume_here && options_.overwrite)
    usage_error("{}: --overwrite would delete the run that --resume {} continues; give one of them", cmd,
                options_.resume);
  remove_stale_temporaries();
  std::vector<std::string> found;
  for (const auto& [step, folder] : checkpoints()) found.push_back(fs::path(folder).filename().string());
  for (const std::string& f : {std::string("model.safetensors"), std::string("optimizer.safetensors"),
                               std::string(kMetricsFile), std::string(kTrainerStateFile)})
    if (fs::exists(fs::path(dir_) / f, ec)) found.push_back(f);
  if (found.size() > 4) found.resize(4), found.push_back("...");
  if (!found.empty() && !resume_here && !options_.overwrite)
    usage_error("{}: {} already holds a run ({}); pass --resume {} to continue it, or --overwrite to replace it", cmd,
                dir_, joined(found), dir_);
}

std::string RunFolder::path(const std::string& file) const {
  return (fs::path(dir_) / file).string();
}

std::vector<std::pair<int64_t, std::string>> RunFolder::checkpoints() const {
  return list_checkpoints(dir_);
}

std::optional<Checkpoint> RunFolder::latest() const {
  auto all = checkpoints();
  if (all.empty()) return std::nullopt;
  return find_checkpoint(all.back().second, options_.command);
}

void RunFolder::begin() {
  if (begun_) return;
  begun_ = true;
  const bool resume_here = resume_from_ && same_folder(resume_from_->run_dir, dir_);
  if (!options_.overwrite || resume_here) return;
  for (const auto& [step, folder] : checkpoints()) remove_entry(folder);
  for (const std::string& f : options_.exports) remove_entry(fs::path(dir_) / f);
  remove_entry(fs::path(dir_) / kMetricsFile);
  sync_dir(dir_);
}

std::string RunFolder::commit(int64_t step, const std::function<void(CheckpointWriter&)>& fill) {
  LR_CHECK(step >= 0, "checkpoint: negative step {}", step);
  remove_stale_temporaries();
  const fs::path final_dir = fs::path(dir_) / (kCheckpointPrefix + std::to_string(step));
  const fs::path tmp = temp_name(final_dir);
  std::error_code ec;
  fs::create_directory(tmp, ec);
  LR_CHECK(!ec, "{}: cannot create the checkpoint folder {}: {}", options_.command, tmp.string(), ec.message());
  try {
    CheckpointWriter w(tmp.string(), step);
    fill(w);
    for (const std::string& f : options_.exports)
      LR_CHECK(fs::is_regular_file(tmp / f), "{}: the checkpoint has no {} to export", options_.command, f);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  sync_dir(tmp);
  // The commit point: before this rename the checkpoint does not exist, after it it is complete.
  if (fs::exists(final_dir, ec)) remove_entry(final_dir);  // only a concurrent writer gets here
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    fs::remove_all(tmp, ec);
    LR_FAIL("{}: cannot rename {} to {}: {}", options_.command, tmp.string(), final_dir.string(), why);
  }
  sync_dir(dir_);
  for (const std::string& f : options_.exports) export_file(final_dir / f, fs::path(dir_) / f);
  sync_dir(dir_);
  // Older checkpoints beyond the kept number go, and so do any from an overwritten run past this step.
  auto all = checkpoints();
  int kept = 1;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->first == step) continue;
    if (it->first < step && kept < options_.keep_checkpoints) {
      ++kept;
      continue;
    }
    remove_entry(it->second);
  }
  return final_dir.string();
}

void RunFolder::write_text(const std::string& file, const std::string& text) const {
  io::write_file_atomic(path(file), text);
}

void RunFolder::write_metrics(const std::vector<json>& records) const {
  std::string text;
  for (const json& r : records) text += r.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  write_text(kMetricsFile, text);
}

void RunFolder::remove_stale_temporaries() const {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    auto pid = temp_owner(e.path().filename().string());
    if (pid && *pid != static_cast<long>(::getpid()) && !process_alive(*pid)) stale.push_back(e.path());
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

}  // namespace lowrank::train
