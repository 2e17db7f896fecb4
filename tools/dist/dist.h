// Data-parallel communication for lowrank's training loops (lowrank_dist): which rank this process
// is, all-reduce, broadcast and barrier over Open MPI when the build has it and mpirun started the
// process; a single-process world (rank 0 of 1, every collective a no-op) otherwise.
//
//   int main(int argc, char** argv) {
//     lowrank::dist::World world(&argc, &argv);   // MPI_Init under mpirun, nothing otherwise
//     ...
//     dist::GradientSync sync;                      // in Trainer's after_backward hook:
//     trainer.hooks.after_backward = [&] { sync.all_reduce(opt.parameters()); };
//   }
//
// A collective that fails (a peer died, the network broke) throws lowrank::Error with one line that
// says so; main() then ends every rank with dist::abort() so that none waits for the dead one. A
// collective that would wait for ever (over shared memory a dead peer is not an error) is ended by
// World's watchdog thread: while a rank waits in a collective it checks the peers on its host, its
// launcher, and with LOWRANK_DIST_TIMEOUT=SECONDS the time waited, and ends the rank with one line
// (exit 1) on any of them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "optim/optimizer.h"

namespace lowrank::dist {

// Whether this build has the MPI backend (LOWRANK_MPI) and the NCCL path for CUDA tensors.
bool built_with_mpi();
bool built_with_nccl();
// True when the environment says a launcher started this process as one of several (Open MPI's
// OMPI_COMM_WORLD_SIZE, PMIx's or Slurm's rank variables).
bool launched_by_mpirun();

// Owns the MPI session: MPI_Init on construction when built with MPI and launched by mpirun,
// MPI_Finalize on destruction. One per process, in main().
class World {
 public:
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;
};

int rank();          // 0 without MPI
int size();          // 1 without MPI
bool is_leader();    // rank() == 0: the rank that prints and writes files
bool distributed();  // size() > 1
// "Open MPI v4.1.4" or "none" (for `lowrank version`).
std::string backend_name();

// Ends every rank with `code` (MPI_Abort); without MPI, std::exit(code).
[[noreturn]] void abort(int code);

// ---- collectives (no-ops in a world of one)
void all_reduce_sum(float* data, int64_t n);
void all_reduce_sum(double* data, int64_t n);
void broadcast(void* data, int64_t bytes, int root = 0);
void barrier();
// The root's value on every rank (stop decisions must be the same everywhere).
bool broadcast_flag(bool value, int root = 0);
// Gathers `text` from every rank on `root` (rank order); other ranks get an empty vector.
std::vector<std::string> gather_strings(const std::string& text, int root = 0);

// In place: the sum over the ranks of a contiguous f32 or f64 tensor. CPU tensors through MPI (a
// no-op in a world of one); CUDA tensors through NCCL when built with it (even in a world of one:
// a 1-rank communicator), else through a host copy and MPI.
void all_reduce_sum(const Tensor& t);

// Rows [begin, end) of `n` that rank `r` of `world` takes: an even split, the first n % world
// ranks one more.
std::pair<int64_t, int64_t> shard(int64_t n, int r = rank(), int world = size());

// ---- gradients and parameters

// The bucket size of GradientSync: measured with bench/dist_bench (all-reduce of the MLP's and the
// small GPT-2's gradients); README "Data-parallel training" has the figures.
inline constexpr int64_t kDefaultBucketBytes = 4 << 20;

// Sums the gradients of a parameter list over the ranks: packed into flat f32 (or f64) buckets of
// bucket_bytes, one all-reduce per bucket, unpacked in place. CPU tensors go through MPI; CUDA
// tensors through NCCL when built with it, else through a host copy and MPI. Every rank must hold
// the same parameters with the same gradients defined (the same model and graph): parameters
// without a gradient are skipped.
class GradientSync {
 public:
  // `always`: communicate in a world of one too (tests and benchmarks of the packing and NCCL paths).
  explicit GradientSync(int64_t bucket_bytes = kDefaultBucketBytes, bool always = false);
  void all_reduce(const optim::NamedParameters& params);
  double seconds() const { return seconds_; }  // spent in all_reduce so far
  int64_t calls() const { return calls_; }     // all_reduce calls that communicated

 private:
  int64_t bucket_bytes_;
  bool always_;
  std::vector<char> host_;  // the packing buffer
  double seconds_ = 0;
  int64_t calls_ = 0;
};

// Overwrites every parameter with rank `root`'s (the same start on every rank, whatever the seed or
// the device did).
void broadcast_parameters(const optim::NamedParameters& params, int root = 0);

}  // namespace lowrank::dist
