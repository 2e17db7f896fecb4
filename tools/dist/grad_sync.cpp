// GradientSync (gradients summed over the ranks in flat buckets) and the parameter broadcast that
// gives every rank the same start.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/autograd.h"
#include "tools/dist/dist.h"

#if LOWRANK_WITH_NCCL
#include "tools/dist/nccl.h"
#endif

namespace lowrank::dist {
namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void all_reduce_host(void* data, int64_t n, DType dtype) {
  if (dtype == DType::F32)
    all_reduce_sum(static_cast<float*>(data), n);
  else
    all_reduce_sum(static_cast<double*>(data), n);
}

// How a group of gradients travels: straight from host memory, from a CUDA device through a host
// copy (no NCCL in this build), or on the device through NCCL.
enum class Path { Host, HostCopy, Nccl };

Path path_for(Device d) {
  if (!d.is_cuda()) return Path::Host;
  return built_with_nccl() ? Path::Nccl : Path::HostCopy;
}

}  // namespace

bool built_with_nccl() {
  return LOWRANK_WITH_NCCL != 0;
}

void all_reduce_sum(const Tensor& t) {
  LR_CHECK(t.is_contiguous(), "all-reduce: the tensor must be contiguous");
  LR_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "all-reduce: f32 or f64 only, got {}",
           dtype_name(t.dtype()));
  switch (path_for(t.device())) {
    case Path::Host:
      all_reduce_host(t.raw_data(), t.numel(), t.dtype());
      return;
    case Path::HostCopy: {
      if (!distributed()) return;
      Tensor h = t.to(Device::cpu()).contiguous();
      all_reduce_host(h.raw_data(), h.numel(), h.dtype());
      Tensor(t).copy_(h);
      return;
    }
    case Path::Nccl:
#if LOWRANK_WITH_NCCL
      nccl::all_reduce_sum(t);
#endif
      return;
  }
}

GradientSync::GradientSync(int64_t bucket_bytes, bool always) : bucket_bytes_(bucket_bytes), always_(always) {
  LR_CHECK(bucket_bytes >= 8, "GradientSync: a bucket must hold at least 8 bytes, got {}", bucket_bytes);
}

void GradientSync::all_reduce(const optim::NamedParameters& params) {
  if (!distributed() && !always_) return;
  const double t0 = seconds_now();
  // Gradients grouped by (device, dtype), each group in parameter order: the same on every rank.
  std::vector<std::pair<std::pair<Device, DType>, std::vector<Tensor>>> groups;
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    LR_CHECK(g.dtype() == DType::F32 || g.dtype() == DType::F64,
             "gradient all-reduce: the gradient of '{}' is {}; f32 or f64 only", name, dtype_name(g.dtype()));
    if (!g.is_contiguous()) {  // (e.g. an expanded broadcast): reduce a copy of its own
      g = g.contiguous();
      Tensor(p).set_grad(g);
    }
    const std::pair<Device, DType> key{g.device(), g.dtype()};
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == key; });
    if (it == groups.end()) it = groups.insert(groups.end(), {key, {}});
    it->second.push_back(g);
  }
  for (auto& [key, grads] : groups) {
    const auto [device, dtype] = key;
    const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
    const int64_t cap = std::max<int64_t>(1, bucket_bytes_ / elem);
    const Path path = path_for(device);
    if (path != Path::Nccl) host_.resize(static_cast<size_t>(cap * elem));
    Tensor dev_buffer;
    if (path == Path::Nccl) dev_buffer = Tensor::empty({cap}, dtype, device);
    std::vector<std::pair<Tensor, int64_t>> pending;  // (gradient, offset in the bucket)
    int64_t used = 0;
    auto flush = [&] {
      if (pending.empty()) return;
      if (path == Path::Nccl) {
        all_reduce_sum(dev_buffer.narrow(0, 0, used));
        for (auto& [g, off] : pending) g.copy_(dev_buffer.narrow(0, off, g.numel()).view(g.shape()));
      } else {
        all_reduce_host(host_.data(), used, dtype);
        for (auto& [g, off] : pending) {
          const size_t bytes = static_cast<size_t>(g.numel() * elem);
          if (path == Path::Host) {
            std::memcpy(g.raw_data(), host_.data() + off * elem, bytes);
          } else {
            Tensor h = Tensor::empty(g.shape(), dtype);
            std::memcpy(h.raw_data(), host_.data() + off * elem, bytes);
            g.copy_(h);
          }
        }
      }
      ++calls_;
      pending.clear();
      used = 0;
    };
    for (Tensor& g : grads) {
      const int64_t n = g.numel();
      if (n >= cap) {  // a gradient as large as a bucket goes alone, in place: no copy to pay for
        all_reduce_sum(g);
        ++calls_;
        continue;
      }
      if (used + n > cap) flush();
      if (path == Path::Nccl) {
        dev_buffer.narrow(0, used, n).copy_(g.view({n}));
      } else {
        const size_t bytes = static_cast<size_t>(n * elem);
        if (path == Path::Host)
          std::memcpy(host_.data() + used * elem, g.raw_data(), bytes);
        else
          std::memcpy(host_.data() + used * elem, g.to(Device::cpu()).contiguous().raw_data(), bytes);
      }
      pending.emplace_back(g, used);
      used += n;
    }
    flush();
  }
  seconds_ += seconds_now() - t0;
}

void broadcast_parameters(const optim::NamedParameters& params, int root) {
  if (!distributed()) return;
  NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    if (p.device().is_cuda() || !p.is_contiguous()) {
      Tensor h = p.detach().to(Device::cpu()).contiguous();
      broadcast(h.raw_data(), static_cast<int64_t>(h.nbytes()), root);
      p.detach().copy_(h);
    } else {
      broadcast(p.raw_data(), static_cast<int64_t>(p.nbytes()), root);
    }
  }
}

}  // namespace lowrank::dist
