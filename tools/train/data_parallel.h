// Data-parallel training on the trainer (mpirun -np N): each rank takes its rows of every global
// batch, backward runs on its share of the global mean loss, the gradients are summed over the
// ranks in Trainer's after_backward hook, and every rank takes the leader's stop decisions. In a
// world of one (no mpirun, or a build without MPI) every member leaves the loop exactly as it was.
//
// The global batch is what --batch says: the same on every rank (a pure function of the step or of
// the loader's state, which every rank holds alike), so a resume and the single-process run see the
// same samples; rank k takes rows shard(batch, k, N).
#pragma once
#include <cstdint>
#include <string>

#include "tools/dist/dist.h"
#include "tools/train/trainer.h"

namespace lowrank::train {

class DataParallel {
 public:
  // `enabled` false: every rank runs the whole loop alone (the same run, replicated: a sweep's base
  // model, bit for bit the single-process one) and only the leader writes.
  explicit DataParallel(bool enabled = true) : enabled_(enabled) {}
  bool active() const { return enabled_ && dist::distributed(); }
  bool leader() const { return dist::is_leader(); }

  // Checks that a global batch of `batch` splits over the ranks (a usage error names `flag`), and
  // that an epoch's last, smaller batch (`last_batch` rows; 0: none) leaves no rank without rows.
  void check_batch(const std::string& command, int64_t batch, int64_t last_batch = 0,
                   const std::string& flag = "--batch") const;
  // This rank's rows [begin, end) of a global batch of n.
  std::pair<int64_t, int64_t> rows(int64_t n) const { return dist::shard(n); }
  // Narrows a batch tensor (rows on axis 0) to this rank's rows.
  Tensor local(const Tensor& batch) const;

  // The step's output from this rank's loss, a mean over `local_count` of the step's `global_count`
  // items: backward runs on (local_count / global_count) · loss, so that the summed gradients are
  // the global mean's; the value the trainer sees and logs is the global mean loss; samples,
  // tokens and sums in `out` are this rank's and become the world's. Unchanged in a world of one.
  StepOutput combine(const Tensor& local_loss, int64_t local_count, int64_t global_count, StepOutput out) const;

  // Same parameters on every rank (rank 0's), then the trainer's hooks: gradients summed after
  // backward, stop decisions broadcast from the leader. Call after restore, before run.
  void attach(Trainer& trainer, const optim::NamedParameters& params);

  const dist::GradientSync& sync() const { return sync_; }

 private:
  bool enabled_;
  dist::GradientSync sync_;
};

}  // namespace lowrank::train
