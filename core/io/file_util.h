// File helpers shared by the readers and writers in core/io/: atomic writes through a temporary
// file in the target's folder, and whole-file reads with errors that name the path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lowrank::io {

// Streams bytes into `<path>.tmp.<pid>.<n>` and renames it over `path` on commit(); the
// destructor removes the temporary file when commit() was never reached (an exception, a crash
// before rename), so readers only ever see the old file or the complete new one.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t nbytes);
  // fsync, close, rename over the destination, fsync the folder.
  void commit();
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// The size of a regular file in bytes; throws naming `what` and the path when it cannot be read.
uint64_t file_size_or_throw(const std::string& path, const char* what);

}  // namespace lowrank::io
