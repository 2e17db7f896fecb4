// run_sweep() over lowrank_dist, and the byte packing its results travel in.
#include "tools/train/sweep.h"

#include <cstring>

#include "core/error.h"
#include "tools/dist/dist.h"

namespace lowrank::train {

std::vector<std::string> run_sweep(int64_t jobs, const std::function<std::string(int64_t)>& run) {
  const int n = dist::size(), me = dist::rank();
  Packer mine;
  for (int64_t i = me; i < jobs; i += n) mine.i64(i).str(run(i));
  const std::vector<std::string> all = dist::gather_strings(mine.bytes());
  if (!dist::is_leader()) return {};
  std::vector<std::string> out(static_cast<size_t>(jobs));
  std::vector<bool> seen(static_cast<size_t>(jobs), false);
  for (const std::string& from_rank : all) {
    Unpacker u(from_rank);
    while (!u.done()) {
      const int64_t i = u.i64();
      LR_CHECK(i >= 0 && i < jobs && !seen[static_cast<size_t>(i)],
               "sweep: a rank sent job {} of {} twice or out of range", i, jobs);
      out[static_cast<size_t>(i)] = u.str();
      seen[static_cast<size_t>(i)] = true;
    }
  }
  for (int64_t i = 0; i < jobs; ++i) LR_CHECK(seen[static_cast<size_t>(i)], "sweep: no rank sent job {}", i);
  return out;
}

// ---- packing

Packer& Packer::i64(int64_t v) {
  buf_.append(reinterpret_cast<const char*>(&v), sizeof v);
  return *this;
}

Packer& Packer::f64(double v) {
  buf_.append(reinterpret_cast<const char*>(&v), sizeof v);
  return *this;
}

Packer& Packer::str(const std::string& s) {
  i64(static_cast<int64_t>(s.size()));
  buf_.append(s);
  return *this;
}

Packer& Packer::f64s(const std::vector<double>& v) {
  i64(static_cast<int64_t>(v.size()));
  buf_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
  return *this;
}

Packer& Packer::tensor(const Tensor& t) {
  LR_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, "sweep: tensors of f32 or f64 only, got {}",
           dtype_name(t.dtype()));
  const Tensor h = t.detach().to(Device::cpu()).contiguous();
  i64(h.dtype() == DType::F32 ? 32 : 64);
  i64(h.dim());
  for (int64_t d = 0; d < h.dim(); ++d) i64(h.size(d));
  buf_.append(static_cast<const char*>(h.raw_data()), h.nbytes());
  return *this;
}

void Unpacker::take(void* out, size_t n) {
  LR_CHECK(pos_ + n <= buf_.size(), "sweep: a result ends early ({} of {} bytes)", buf_.size() - pos_, n);
  if (n == 0) return;  // an empty vector's data() may be null, and memcpy must not see it
  std::memcpy(out, buf_.data() + pos_, n);
  pos_ += n;
}

int64_t Unpacker::i64() {
  int64_t v = 0;
  take(&v, sizeof v);
  return v;
}

double Unpacker::f64() {
  double v = 0;
  take(&v, sizeof v);
  return v;
}

std::string Unpacker::str() {
  const int64_t n = i64();
  LR_CHECK(n >= 0 && static_cast<size_t>(n) <= buf_.size() - pos_, "sweep: a string of {} bytes runs past the result",
           n);
  std::string s = buf_.substr(pos_, static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return s;
}

std::vector<double> Unpacker::f64s() {
  const int64_t n = i64();
  LR_CHECK(n >= 0 && static_cast<size_t>(n) <= (buf_.size() - pos_) / sizeof(double),
           "sweep: {} numbers run past the result", n);
  std::vector<double> v(static_cast<size_t>(n));
  take(v.data(), v.size() * sizeof(double));
  return v;
}

Tensor Unpacker::tensor() {
  const int64_t bits = i64(), dims = i64();
  LR_CHECK((bits == 32 || bits == 64) && dims >= 0 && dims <= 8, "sweep: not a packed tensor ({} bits, {} axes)", bits,
           dims);
  Shape shape;
  for (int64_t d = 0; d < dims; ++d) shape.push_back(i64());
  Tensor t = Tensor::empty(shape, bits == 32 ? DType::F32 : DType::F64);
  take(t.raw_data(), t.nbytes());
  return t;
}

}  // namespace lowrank::train
