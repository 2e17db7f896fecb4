// The kernel table: one slot per kernel family, one table per device type. Ops (core/ops/*)
// validate inputs, allocate outputs and call a slot; kernels assume validated input.
// kernels/cpu fills the CPU table, kernels/cuda the CUDA one (register_cuda_kernels()); a slot
// nobody filled throws "no <device> kernel for <op>".
#pragma once
#include <cstdint>

#include "core/op_list.h"
#include "core/tensor.h"

namespace lowrank {

enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Tanh,
  Sigmoid,
  Relu,
  Gelu,
  Abs,
  Sign,
  AddScalar,   // x + alpha
  MulScalar,   // x * alpha
  PowScalar,   // x ^ alpha
  RSubScalar,  // alpha - x
  RDivScalar,  // alpha / x
};

enum class BinaryOp : uint8_t {
  Add,
  Sub,
  Mul,
  Div,
  Pow,
  Maximum,
  Minimum,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,            // 1 or 0 in the output dtype
  MaskedFill,    // b != 0 ? alpha : a
  ReluBackward,  // a = x, b = grad: grad * (x > 0)
  GeluBackward,  // a = x, b = grad: grad * gelu_tanh'(x)
};

enum class ReduceOp : uint8_t { Sum, Max };
enum class RandomKind : uint8_t { Uniform, Normal };

// Row-major batched GEMM: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], with op(A) [m, k]
// and op(B) [k, n]. Pointers come from the tensors' raw_data(); strides are in elements.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1.0, beta = 0.0;
};

struct AdamArgs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;        // 1-based, for bias correction
  bool decoupled = false;  // AdamW: p -= lr * wd * p; Adam: g += wd * p
};

// Fused attention (core/ops/attention.cpp): q [B, Tq, H, D], k and v [B, Tk, H, D], each with unit
// stride on D and any strides on B, T and H (a KV cache's narrowed view goes in without a copy).
struct AttentionArgs {
  int64_t batch = 0, heads = 0, tq = 0, tk = 0, head_dim = 0;
  bool causal = true;      // query i sees keys j <= i + (tk - tq)
  double scale = 1.0;      // resolved by the op (> 0)
  double dropout_p = 0.0;  // in [0, 1); the mask is Philox(seed, offset) over [B, H, Tq, Tk] (core/ops.h)
  uint64_t seed = 0, offset = 0;
};

struct Backend {
  // Elementwise. x (or a, b) already has out's shape (broadcast axes have stride 0); out is
  // contiguous; inputs share out's dtype (Compare outputs use it too).
  void (*unary)(UnaryOp op, const Tensor& x, const Tensor& out, double alpha) = nullptr;
  void (*binary)(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha) = nullptr;
  // dst[i] = src[i] for same-shaped tensors on this device, any strides, any dtypes (casts).
  void (*copy)(const Tensor& src, const Tensor& dst) = nullptr;
  void (*fill)(const Tensor& dst, double value) = nullptr;  // dst: any view
  // Reduce over the axes whose bit is set; out has x's rank (1 on reduced axes), contiguous.
  void (*reduce)(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t axes_mask) = nullptr;
  // Index of the first maximum along `axis`; out is int64 with x's rank, 1 on that axis.
  void (*argmax)(const Tensor& x, const Tensor& out, int axis) = nullptr;
  void (*gemm)(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) = nullptr;
  // Softmax over the last axis of contiguous [rows, cols]; log selects log_softmax.
  void (*softmax)(const Tensor& x, const Tensor& y, bool log) = nullptr;
  void (*softmax_backward)(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log) = nullptr;
  // logits contiguous [N, C], labels int64 [N]; losses [N] (0 where the label is ignore_index)
  // and lse [N], each row's log-sum-exp, kept for backward (any value where ignored).
  void (*cross_entropy)(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses,
                        const Tensor& lse) = nullptr;
  // grad_logits[i] = (exp(logits[i] - lse[i]) - onehot(labels[i])) * grad_losses[i] (0 where
  // ignored); lse is forward's.
  void (*cross_entropy_backward)(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& lse,
                                 const Tensor& grad_losses, const Tensor& grad_logits) = nullptr;
  // Over the last axis of contiguous [rows, D]; w, b [D] (always defined: the op passes ones and
  // zeros when the user gives none); mean, rstd [rows] in x's dtype.
  void (*layer_norm)(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                     const Tensor& rstd) = nullptr;
  // gx [rows, D]; gw, gb [D] are written (not accumulated).
  void (*layer_norm_backward)(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                              const Tensor& gy, const Tensor& gx, const Tensor& gw, const Tensor& gb) = nullptr;
  // out [n, D] = weight[ids[i]] for contiguous int64 ids [n]; false when an id is out of range.
  bool (*embedding)(const Tensor& weight, const Tensor& ids, const Tensor& out) = nullptr;
  // grad_weight (zeroed by the caller) += scatter of grad [n, D] at ids.
  void (*embedding_backward)(const Tensor& grad, const Tensor& ids, const Tensor& grad_weight) = nullptr;
  // Philox 4x32-10: element i of contiguous out draws from counter (offset + i / 4), lane i % 4,
  // so CPU and CUDA give the same numbers for the same seed.
  void (*random)(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out) = nullptr;
  // One fused update per parameter; all contiguous, same shape and dtype.
  void (*adam_step)(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m,
                    const Tensor& v) = nullptr;
  // Fused LoRA: y [M, out] = base_scale * x W^T + b + scale * (x A^T) B^T; xa [M, r] = x A^T is
  // kept for backward. x [M, in], W [out, in], b [out] or undefined, A [r, in], B [out, r].
  void (*lora_forward)(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm,
                       double scale, double base_scale, const Tensor& y, const Tensor& xa) = nullptr;
  // Writes each defined gradient output: gx [M, in], gw [out, in], gb [out], ga [r, in], gbm [out, r].
  void (*lora_backward)(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                        const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                        const Tensor& gb, const Tensor& ga, const Tensor& gbm) = nullptr;
  // out [B, Tq, H, D] contiguous; lse [B, H, Tq] contiguous: each row's log-sum-exp of the scaled,
  // masked scores (before dropout), all that backward needs to rebuild the probabilities.
  void (*attention_forward)(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse) = nullptr;
  // gout and out [B, Tq, H, D] contiguous; writes each defined gradient (gq like q, gk and gv like
  // k and v, all contiguous).
  void (*attention_backward)(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& gout, const Tensor& gq,
                             const Tensor& gk, const Tensor& gv) = nullptr;
  // Thin SVD of a [m, n] matrix (any layout): u [m, k], s [k] descending, vt [k, n], k = min(m, n).
  // CPU: LAPACKE gesdd; CUDA: cuSOLVER.
  void (*svd)(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt) = nullptr;
  // Contiguous byte copies between this device and the host (CPU table: memcpy).
  void (*to_host)(const void* src, void* dst, size_t nbytes, Device src_device) = nullptr;
  void (*from_host)(const void* src, void* dst, size_t nbytes, Device dst_device) = nullptr;
  void (*synchronize)(Device d) = nullptr;
};

// The table for a device type; the first call registers the built-in kernels.
Backend& backend_table(DeviceType t);

// Returns the slot, or throws "no <device> kernel for <op>" when it is empty.
template <class Fn>
Fn kernel(Device d, Fn Backend::*slot, OpKind op) {
  Fn fn = backend_table(d.type).*slot;
  if (!fn) [[unlikely]]
    LR_FAIL("no {} kernel for {}", d.is_cuda() ? "CUDA" : "CPU", op_name(op));
  return fn;
}

// Defined by kernels/cpu and kernels/cuda (a no-op in builds without CUDA). Called once, from
// backend_table(); never from static initialisers.
void register_cpu_kernels(Backend& table);
void register_cuda_kernels(Backend& table);

}  // namespace lowrank
