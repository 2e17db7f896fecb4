// Tensor construction, host access, views with their backward, device and dtype moves.
#include "core/tensor.h"

#include <cstring>
#include <numeric>
#include <ostream>
#include <sstream>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/pool.h"
#include "core/size_check.h"

namespace lowrank {
namespace {

Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  auto impl = detail::make_pooled<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Strides for viewing (shape, strides) as new_shape without a copy, or empty when impossible
// (the stride-compatibility rule PyTorch uses for view()).
bool view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape, Strides& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) <= 1 || shape.empty()) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from) {
  Shape s = requested;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LR_CHECK(infer_at < 0, "reshape: more than one -1 in {}", requested);
      infer_at = static_cast<int64_t>(i);
    } else {
      LR_CHECK(s[i] >= 0, "reshape: negative size in {}", requested);
      known *= s[i];
    }
  }
  if (infer_at >= 0) {
    LR_CHECK(known != 0 && numel % known == 0, "reshape: cannot reshape {} into {}", from, requested);
    s[infer_at] = numel / known;
  }
  LR_CHECK(shape_numel(s) == numel, "reshape: cannot reshape {} ({} elements) into {}", from, numel, requested);
  return s;
}

template <class T>
void format_elem(std::ostream& os, T v) {
  os << v;
}

}  // namespace

// ---- construction

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) LR_CHECK(d >= 0, "empty: negative size in shape {}", shape);
  const int64_t nbytes = checked_nbytes(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)), "empty");
  auto impl = detail::make_pooled<TensorImpl>();
  impl->storage = detail::make_pooled<Storage>(nbytes, device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return from_vector(v, {n}).to(dtype).to(device);
}

template <class T>
Tensor Tensor::from_data(std::span<const T> data, const Shape& shape, Device device) {
  LR_CHECK(static_cast<int64_t>(data.size()) == shape_numel(shape),
           "from_data: {} values do not fill shape {} ({} elements)", data.size(), shape, shape_numel(shape));
  Tensor t = empty(shape, dtype_of<T>(), Device::cpu());
  if (!data.empty()) std::memcpy(t.raw_data(), data.data(), data.size() * sizeof(T));
  return device.is_cpu() ? t : t.to(device);
}
template Tensor Tensor::from_data<float>(std::span<const float>, const Shape&, Device);
template Tensor Tensor::from_data<double>(std::span<const double>, const Shape&, Device);
template Tensor Tensor::from_data<int64_t>(std::span<const int64_t>, const Shape&, Device);
template Tensor Tensor::from_data<int32_t>(std::span<const int32_t>, const Shape&, Device);
template Tensor Tensor::from_data<uint8_t>(std::span<const uint8_t>, const Shape&, Device);

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides, int64_t offset,
                       DType dtype) {
  auto impl = detail::make_pooled<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- properties

int64_t Tensor::size(int64_t axis) const {
  return impl_->shape[normalize_axis(axis, dim(), "size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

// ---- host access

template <class T>
std::vector<T> Tensor::to_vector() const {
  LR_CHECK(defined(), "to_vector: undefined tensor");
  Tensor c = dtype() == dtype_of<T>() ? *this : to(dtype_of<T>());
  {
    NoGradGuard ng;
    c = c.contiguous();
  }
  std::vector<T> out(static_cast<size_t>(c.numel()));
  if (out.empty()) return out;
  if (c.device().is_cpu()) {
    std::memcpy(out.data(), c.raw_data(), out.size() * sizeof(T));
  } else {
    kernel(c.device(), &Backend::to_host, OpKind::ToDevice)(c.raw_data(), out.data(), out.size() * sizeof(T),
                                                            c.device());
  }
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  LR_CHECK(defined() && numel() == 1, "item: tensor of shape {} has {} elements, not 1", shape(), numel());
  return to_vector<double>()[0];
}

// ---- views

Tensor Tensor::view(const Shape& requested) const {
  Shape s = infer_shape(requested, numel(), shape());
  Strides st;
  if (is_contiguous())
    st = contiguous_strides(s);
  else
    LR_CHECK(view_strides(shape(), strides(), s, st),
             "view: a tensor of shape {} with strides {} cannot be viewed as {} without a copy; use reshape", shape(),
             strides(), s);
  Tensor out = make_view(*this, s, std::move(st), offset());
  if (needs_grad(*this)) {
    Shape in_shape = shape();
    record(OpKind::Reshape, out, {*this},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape s = infer_shape(requested, numel(), shape());
  Strides st;
  if (view_strides(shape(), strides(), s, st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  LR_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: {} axes given for a tensor of shape {}", dims.size(),
           shape());
  Shape s(dims.size());
  Strides st(dims.size());
  std::vector<int> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int d = normalize_axis(dims[i], dim(), "permute");
    LR_CHECK(inverse[d] < 0, "permute: axis {} repeated in {}", d, dims);
    inverse[d] = static_cast<int>(i);
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, std::move(s), std::move(st), offset());
  if (needs_grad(*this)) {
    record(OpKind::Permute, out, {*this},
           [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
  }
  return out;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  int ia = normalize_axis(a, dim(), "transpose"), ib = normalize_axis(b, dim(), "transpose");
  std::vector<int> dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[ia], dims[ib]);
  return permute(dims);
}

Tensor Tensor::mT() const {
  LR_CHECK(dim() >= 2, "mT: needs at least 2 axes, got shape {}", shape());
  return transpose(-2, -1);
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t end, int64_t step) const {
  int ax = normalize_axis(axis, dim(), "slice");
  int64_t n = shape()[ax];
  LR_CHECK(step > 0, "slice: step must be positive, got {}", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape();
  Strides st = strides();
  s[ax] = (end - start + step - 1) / step;
  st[ax] *= step;
  Tensor out = make_view(*this, std::move(s), std::move(st), offset() + start * strides()[ax]);
  if (needs_grad(*this)) {
    Shape in_shape = shape();
    record(OpKind::Slice, out, {*this}, [in_shape, ax, start, end, step](const Tensor& g) {
      Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
      gx.slice(ax, start, end, step).copy_(g);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor Tensor::select(int64_t axis, int64_t index) const {
  int ax = normalize_axis(axis, dim(), "select");
  LR_CHECK(index >= -shape()[ax] && index < shape()[ax], "select: index {} out of range for axis {} of shape {}", index,
           ax, shape());
  if (index < 0) index += shape()[ax];
  return slice(ax, index, index + 1).squeeze(ax);
}

Tensor Tensor::expand(const Shape& target) const {
  LR_CHECK(static_cast<int64_t>(target.size()) >= dim(), "expand: cannot expand shape {} to {}", shape(), target);
  size_t lead = target.size() - shape().size();
  Shape s(target.size());
  Strides st(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      LR_CHECK(target[i] >= 0, "expand: cannot expand shape {} to {}", shape(), target);
      s[i] = target[i];
      continue;
    }
    int64_t d = shape()[i - lead];
    int64_t want = target[i] == -1 ? d : target[i];
    LR_CHECK(d == want || d == 1, "expand: cannot expand shape {} to {}", shape(), target);
    s[i] = want;
    st[i] = d == want ? strides()[i - lead] : 0;
  }
  if (s == shape()) return *this;
  Tensor out = make_view(*this, s, std::move(st), offset());
  if (needs_grad(*this)) {
    Shape in_shape = shape();
    record(OpKind::Expand, out, {*this},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  }
  return out;
}

Tensor Tensor::unsqueeze(int64_t axis) const {
  int ax = normalize_axis(axis, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + ax, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t axis) const {
  int ax = normalize_axis(axis, dim(), "squeeze");
  if (shape()[ax] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + ax);
  return reshape(s);
}

Tensor Tensor::flatten(int64_t start_axis, int64_t end_axis) const {
  if (dim() == 0) return reshape({1});
  int a = normalize_axis(start_axis, dim(), "flatten"), b = normalize_axis(end_axis, dim(), "flatten");
  LR_CHECK(a <= b, "flatten: start axis {} is after end axis {}", a, b);
  Shape s(shape().begin(), shape().begin() + a);
  int64_t n = 1;
  for (int i = a; i <= b; ++i) n *= shape()[i];
  s.push_back(n);
  s.insert(s.end(), shape().begin() + b + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  kernel(device(), &Backend::copy, OpKind::Copy)(*this, out);
  if (needs_grad(*this)) {
    record(OpKind::Contiguous, out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  }
  return out;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), target);
  if (numel() > 0) {
    if (src.device().is_cpu()) {
      kernel(target, &Backend::from_host, OpKind::ToDevice)(src.raw_data(), out.raw_data(), src.nbytes(), target);
    } else if (target.is_cpu()) {
      kernel(src.device(), &Backend::to_host, OpKind::ToDevice)(src.raw_data(), out.raw_data(), src.nbytes(),
                                                                src.device());
    } else {
      return to(Device::cpu()).to(target);
    }
  }
  if (needs_grad(*this)) {
    Device from = device();
    record(OpKind::ToDevice, out, {*this}, [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  }
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  kernel(device(), &Backend::copy, OpKind::Cast)(*this, out);
  if (needs_grad(*this) && is_floating(target)) {
    DType from = dtype();
    record(OpKind::Cast, out, {*this}, [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  }
  return out;
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

// ---- in place

Tensor& Tensor::copy_(const Tensor& src) {
  LR_CHECK(src.defined(), "copy_: source is undefined");
  Tensor s = src.detach();
  if (s.device() != device()) s = s.to(device());
  if (s.shape() != shape()) {
    broadcast_shapes(s.shape(), shape(), "copy_");
    s = s.expand(shape());
    LR_CHECK(s.shape() == shape(), "copy_: cannot copy shape {} into {}", src.shape(), shape());
  }
  if (numel() > 0) kernel(device(), &Backend::copy, OpKind::Copy)(s, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  if (numel() > 0) kernel(device(), &Backend::fill, OpKind::Fill)(*this, value);
  return *this;
}

Tensor& Tensor::requires_grad_(bool on) {
  LR_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating tensors can require grad, not {}",
           dtype_name(dtype()));
  impl_->requires_grad = on;
  return *this;
}

// ---- printing

std::string Tensor::str(int64_t max_per_axis) const {
  std::ostringstream os;
  if (!defined()) return "Tensor(undefined)";
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str()
     << ")\n";
  std::vector<double> v = to_vector<double>();
  Strides cs = contiguous_strides(shape());
  std::vector<int64_t> idx;
  // Recursive print with "..." past max_per_axis elements on any axis.
  auto rec = [&](auto&& self, size_t axis, int64_t base) -> void {
    if (axis == shape().size()) {
      os << v[static_cast<size_t>(base)];
      return;
    }
    os << '[';
    int64_t n = shape()[axis];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_axis && i == max_per_axis / 2) {
        os << "..., ";
        i = n - max_per_axis / 2;
      }
      self(self, axis + 1, base + i * cs[axis]);
      if (i + 1 < n) os << ", ";
    }
    os << ']';
  };
  rec(rec, 0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.str();
}

}  // namespace lowrank
