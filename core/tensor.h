// Tensor: a handle to shared Storage plus shape, strides and offset (views share storage),
// and the autograd state (requires_grad, grad, the Node that produced it).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace lowrank {

struct Node;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;     // set on outputs of recorded ops
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- construction
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  // [0, 1, ..., n-1]
  static Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());
  // Copies host data; `data.size()` must equal the shape's element count.
  template <class T>
  static Tensor from_data(std::span<const T> data, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device = Device::cpu()) {
    return from_data<float>(std::span<const float>(v), shape, device);
  }
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape, Device device = Device::cpu()) {
    return from_data<double>(std::span<const double>(v), shape, device);
  }
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape, Device device = Device::cpu()) {
    return from_data<int64_t>(std::span<const int64_t>(v), shape, device);
  }
  // Wraps existing storage as a view (no copy).
  static Tensor view_of(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides, int64_t offset,
                        DType dtype);

  // ---- properties
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Strides& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
  int64_t size(int64_t axis) const;
  int64_t numel() const { return shape_numel(impl_->shape); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  // Pointer to the first element (storage base + offset). Kernels index with strides from here.
  void* raw_data() const;
  template <class T>
  T* data() const {
    LR_CHECK(dtype_of<T>() == dtype(), "data<{}>(): tensor has dtype {}", dtype_name(dtype_of<T>()),
             dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }

  // ---- host access (copies; works for any device and layout)
  template <class T>
  std::vector<T> to_vector() const;
  double item() const;  // one element, as double

  // ---- views and copies (all recorded by autograd; see core/ops.h for the rest of the ops)
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;  // reshape that never copies; throws when it would have to
  Tensor permute(const std::vector<int>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor mT() const;  // swaps the last two axes
  Tensor slice(int64_t axis, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t axis, int64_t start, int64_t length) const { return slice(axis, start, start + length); }
  Tensor select(int64_t axis, int64_t index) const;  // drops the axis
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t axis) const;
  Tensor squeeze(int64_t axis) const;
  Tensor flatten(int64_t start_axis = 0, int64_t end_axis = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor detach() const;  // shares storage, no autograd history

  // ---- in place, outside autograd (optimizers, initialisers, loaders)
  Tensor& copy_(const Tensor& src);  // src broadcastable to this; any device; casts dtype
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- autograd
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  // From a scalar (seed 1) or with an explicit gradient of this tensor's shape.
  void backward(const Tensor& grad = Tensor()) const;

  std::string str(int64_t max_per_axis = 6) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace lowrank
