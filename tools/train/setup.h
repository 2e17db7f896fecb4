// What every run sets up the same way: the device and thread count (with one bound on threads),
// and the error type for bad usage that the program turns into exit code 2.
#pragma once
#include <string>

#include "core/device.h"
#include "core/error.h"

namespace lowrank::train {

// A mistake in how the program was called (flags that contradict each other or the files on
// disk, a rank the layer cannot have, ...): main() prints it as one line and exits with 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Throws UsageError with the formatted message (no file:line: it is about the command line).
template <class... Args>
[[noreturn]] void usage_error(std::string_view fmt, const Args&... args) {
  throw UsageError(detail::format(fmt, args...));
}

// --threads takes 0 (one per core) to kMaxThreads. Far beyond the cores a thread only waits, and
// tens of thousands exhaust libgomp's memory and deadlock OpenBLAS at exit.
inline constexpr int kMaxThreads = 256;

// What --threads 0 means: the cores this process may run on (its CPU affinity), shared out among
// the ranks that mpirun started on this host (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), at least 1.
int threads_per_process();

// Parses `device` (cpu, cuda, cuda:N), checks that a CUDA device answers, and applies `threads`
// (0: threads_per_process()) to the CPU kernels' thread pool. `command` names the subcommand in messages.
Device setup_device(const std::string& device, int threads, const std::string& command);

}  // namespace lowrank::train
