// Sweeps over ranks (mpirun -np N): independent jobs (a lora-experiment's method × rank × seed)
// spread round-robin over the ranks, their results gathered on rank 0 in job order, bit for bit
// (results travel as bytes packed here, never as printed numbers).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowrank::train {

// Runs job i on rank i % N (a world of one runs them all, in order) and returns every job's
// result on rank 0, in job order; other ranks get an empty vector. A job that throws ends its
// rank (main aborts the world), so the gather never waits for it.
std::vector<std::string> run_sweep(int64_t jobs, const std::function<std::string(int64_t job)>& run);

// Packs numbers, strings and tensors into bytes (host byte order: the ranks of a sweep share a
// machine type) and reads them back in the same order.
class Packer {
 public:
  Packer& i64(int64_t v);
  Packer& f64(double v);
  Packer& str(const std::string& s);
  Packer& f64s(const std::vector<double>& v);
  Packer& tensor(const Tensor& t);  // any device; f32 or f64; comes back on the CPU
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

class Unpacker {
 public:
  explicit Unpacker(const std::string& bytes) : buf_(bytes) {}
  int64_t i64();
  double f64();
  std::string str();
  std::vector<double> f64s();
  Tensor tensor();
  bool done() const { return pos_ >= buf_.size(); }

 private:
  void take(void* out, size_t n);
  std::string buf_;  // a copy: an Unpacker made from a temporary string must not outlive it
  size_t pos_ = 0;
};

}  // namespace lowrank::train
