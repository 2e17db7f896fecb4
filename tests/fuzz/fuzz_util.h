// Shared by the libFuzzer targets: bytes as a file path for readers that take paths (a memfd, so no
// disk traffic), and the rule every target enforces: a parser either returns or throws
// lowrank::Error; any other exception is a finding.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace lowrank::fuzz {

// A memory-backed file holding `data`, reachable as path() until destruction.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("lowrank-fuzz", 0);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

// Runs `f`; lowrank::Error is the expected answer to bad input. Messages must stay bounded.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).size() > 4096) {
      std::fprintf(stderr, "error message of %zu bytes\n", std::string(e.what()).size());
      std::abort();
    }
  }
}

}  // namespace lowrank::fuzz
