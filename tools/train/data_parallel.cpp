// DataParallel: the rows of a rank, the combined loss, the gradient all-reduce and the shared stop.
#include "tools/train/data_parallel.h"

#include <vector>

#include "core/ops.h"
#include "tools/train/setup.h"

namespace lowrank::train {

void DataParallel::check_batch(const std::string& command, int64_t batch, int64_t last_batch,
                               const std::string& flag) const {
  const int n = dist::size();
  if (!active()) return;
  if (batch % n != 0)
    usage_error("{}: {} {} is the global batch and must divide by the {} ranks (each takes {} / {})", command, flag,
                batch, n, flag, n);
  if (last_batch > 0 && last_batch < n)
    usage_error("{}: an epoch's last batch has {} samples, fewer than the {} ranks; change {} or the sample count",
                command, last_batch, n, flag);
}

Tensor DataParallel::local(const Tensor& batch) const {
  if (!active()) return batch;
  const auto [begin, end] = rows(batch.size(0));
  return batch.narrow(0, begin, end - begin);
}

StepOutput DataParallel::combine(const Tensor& local_loss, int64_t local_count, int64_t global_count,
                                 StepOutput out) const {
  if (!active()) {
    out.loss = local_loss;
    return out;
  }
  // One small all-reduce: the loss sum, the samples, the tokens and each of the sums (the same
  // keys on every rank: the same step function made them).
  const double value = local_loss.item();
  std::vector<double> v{value * static_cast<double>(local_count), static_cast<double>(out.samples),
                        static_cast<double>(out.tokens)};
  for (const auto& [k, x] : out.sums) v.push_back(x);
  dist::all_reduce_sum(v.data(), static_cast<int64_t>(v.size()));
  const double global = v[0] / static_cast<double>(global_count);
  const double share = static_cast<double>(local_count) / static_cast<double>(global_count);
  // d(loss)/d(params) is this rank's share of the global mean's; its value is the global mean.
  Tensor weighted = mul(local_loss, share);
  out.loss = add(weighted, global - weighted.item());
  out.samples = static_cast<int64_t>(v[1]);
  out.tokens = static_cast<int64_t>(v[2]);
  size_t i = 3;
  for (auto& [k, x] : out.sums) x = v[i++];
  out.weight *= static_cast<double>(global_count) / static_cast<double>(local_count);  // a mean over the world's
  return out;
}

void DataParallel::attach(Trainer& trainer, const optim::NamedParameters& params) {
  if (!active()) return;
  dist::broadcast_parameters(params);
  trainer.hooks.after_backward = [this, &trainer] { sync_.all_reduce(trainer.optimizer().parameters()); };
  trainer.hooks.agree_stop = [](bool stop) { return dist::broadcast_flag(stop); };
}

}  // namespace lowrank::train
