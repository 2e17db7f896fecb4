// The public op API. Each op checks shapes, dtypes and devices once, allocates its output,
// calls the kernel slot for the tensor's device and records its backward (core/ops/*.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/tensor.h"
#include "core/threads.h"

namespace lowrank {

// ---- elementwise, broadcasting (NumPy rules); gradients are reduced back to each input's shape
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor gelu(const Tensor& a);  // tanh approximation, as GPT-2
Tensor abs(const Tensor& a);
// Comparisons give 1/0 in the inputs' dtype and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
// out = mask != 0 ? value : x; mask broadcasts to x's shape (same dtype as x, or u8).
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// For layers fused into one autograd node (nn/functional.h), no autograd of their own:
// y = relu?(y + bias) in y's own storage, bias [y's last axis] or undefined (y must be an op's
// fresh, contiguous output that nothing else holds); and ReLU's gradient, g where y > 0 else 0,
// given ReLU's input or its output (the same mask).
void add_bias_relu_(const Tensor& y, const Tensor& bias, bool relu);
Tensor relu_backward(const Tensor& y, const Tensor& g);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator+(const Tensor& a, double s) {
  return add(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
  return sub(a, s);
}
inline Tensor operator*(const Tensor& a, double s) {
  return mul(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
  return div(a, s);
}
inline Tensor operator+(double s, const Tensor& a) {
  return add(a, s);
}
inline Tensor operator-(double s, const Tensor& a) {
  return rsub(s, a);
}
inline Tensor operator*(double s, const Tensor& a) {
  return mul(a, s);
}
inline Tensor operator/(double s, const Tensor& a) {
  return rdiv(s, a);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}

// ---- reductions over any axes (empty = all axes)
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t axis, bool keepdim = false);  // int64
// Sums a broadcast result back down to `shape` (the gradient of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- matmul: 2-D, or batched over leading axes (which broadcast). Transposed views go to the
// GEMM as transpose flags, not copies.
Tensor matmul(const Tensor& a, const Tensor& b);
// einsum for two operands, e.g. "abc,cd->abd", "abc,cde->abde", "abcd,cde->abe".
Tensor einsum(const std::string& equation, const Tensor& a, const Tensor& b);

// ---- shape ops (the view ops are also Tensor methods)
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor permute(const Tensor& x, const std::vector<int>& dims);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t axis);

// ---- neural-network ops
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);
// logits [N, C] (or [..., C]), labels int64 [N] (or [...]); mean over non-ignored rows (0 when
// every row is ignored). Labels are read on the host once to check their range (a sync on CUDA).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);
// Over the last axis; weight and bias [D] (either may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// weight [V, D], ids int64 of any shape -> [..., D]; out-of-range ids throw.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Inverted dropout; the mask for (seed, offset) is the same on CPU and CUDA.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset = 0);
// Scaled-dot-product attention in the [batch, time, heads, head_dim] layout that EinsumDense
// "abc,cde->abde" produces (no permute copies). q [B, Tq, H, D], k and v [B, Tk, H, D], Tq <= Tk.
// causal: query i sees keys j <= i + (Tk - Tq) (so a KV-cached step, Tq = 1, sees all Tk keys).
// scale <= 0 means 1/sqrt(D). dropout_p on the attention probabilities (training): probability
// (b, h, i, j) is kept when philox_uniform(seed, offset, ((b·H + h)·Tq + i)·Tk + j) >= dropout_p,
// the mask dropout() draws for a [B, H, Tq, Tk] tensor, so backward regenerates it and every device
// agrees. Returns [B, Tq, H, D]. One autograd op (OpKind::Attention) with its own backward kernels.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true, double scale = 0.0,
                 double dropout_p = 0.0, uint64_t seed = 0, uint64_t offset = 0);
// Fused LoRA linear (docs/design.md, idea 6): base_scale * x W^T + b + scale * (x A^T) B^T on x's last axis.
Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                   double base_scale = 1.0);

// ---- linear algebra (no autograd)
// Thin SVD a = u · diag(s) · vt, k = min(m, n): u [m, k], s [k] descending, vt [k, n]; same dtype
// and device as `a`. `a`: 2-D, non-empty, f32/f64, finite (anything else throws).
struct SvdResult {
  Tensor u, s, vt;
};
SvdResult svd(const Tensor& a);

// ---- random tensors (Philox; the same numbers on every device for the same seed and offset)
Tensor rand(const Shape& shape, uint64_t seed, uint64_t offset = 0, DType dtype = DType::F32,
            Device device = Device::cpu());
Tensor randn(const Shape& shape, uint64_t seed, uint64_t offset = 0, DType dtype = DType::F32,
             Device device = Device::cpu());

// ---- optimizer update (in place, outside autograd; used by optim/)
struct AdamArgs;  // core/dispatch.h
// One fused Adam/AdamW step on a parameter: param, m, v contiguous, f32 or f64, one device, one
// shape; grad of the same shape (any layout). The math of torch.optim.Adam / AdamW (core/ops/adam.cpp).
void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamArgs& args);

}  // namespace lowrank
