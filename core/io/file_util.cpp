// Atomic file writes (temp file + fsync + rename) and file-size checks for core/io/.
#include "core/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace lowrank::io {
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

std::string parent_dir(const std::string& path) {
  std::filesystem::path p(path);
  std::string dir = p.parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  LR_CHECK(!path.empty(), "write: empty output path");
  static std::atomic<uint64_t> counter{0};
  temp_path_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    std::string why = errno_text();
    std::error_code ec;
    bool dir_ok = std::filesystem::is_directory(parent_dir(path), ec);
    LR_FAIL("write {}: cannot create a temporary file in {}: {}{}", path, parent_dir(path), why,
            dir_ok ? "" : " (the folder does not exist)");
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t nbytes) {
  LR_CHECK(fd_ >= 0, "write {}: the file is already closed", path_);
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    LR_CHECK(n > 0, "write {}: {}", temp_path_, n < 0 ? errno_text() : std::string("no progress"));
    p += n;
    nbytes -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  LR_CHECK(fd_ >= 0 && !committed_, "write {}: commit() called twice", path_);
  LR_CHECK(::fsync(fd_) == 0, "write {}: fsync: {}", temp_path_, errno_text());
  int rc = ::close(fd_);
  fd_ = -1;
  LR_CHECK(rc == 0, "write {}: close: {}", temp_path_, errno_text());
  LR_CHECK(::rename(temp_path_.c_str(), path_.c_str()) == 0, "write {}: rename from {}: {}", path_, temp_path_,
           errno_text());
  committed_ = true;
  // Makes the rename itself durable; a folder that cannot be opened only loses that guarantee.
  int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

uint64_t file_size_or_throw(const std::string& path, const char* what) {
  struct stat st {};
  LR_CHECK(::stat(path.c_str(), &st) == 0, "{}: cannot open {}: {}", what, path, errno_text());
  LR_CHECK(S_ISREG(st.st_mode), "{}: {} is not a regular file", what, path);
  return static_cast<uint64_t>(st.st_size);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFileWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

}  // namespace lowrank::io
