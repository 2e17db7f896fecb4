// CPU kernel declarations; register.cpp puts them in the CPU slots of the kernel table.
// Each is also the oracle its CUDA twin is tested against.
#pragma once
#include "core/dispatch.h"

namespace lowrank::cpu {

void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha);
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
void reduce(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t axes_mask);
void argmax(const Tensor& x, const Tensor& out, int axis);
void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c);
void random(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out);
void softmax(const Tensor& x, const Tensor& y, bool log);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);
void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad_losses, const Tensor& grad_logits);
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb);
bool embedding(const Tensor& weight, const Tensor& ids, const Tensor& out);
void embedding_backward(const Tensor& grad, const Tensor& ids, const Tensor& grad_weight);
void lora_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                  double base_scale, const Tensor& y, const Tensor& xa);
void lora_backward(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                   const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                   const Tensor& gb, const Tensor& ga, const Tensor& gbm);
// Fused attention (attention.cpp): blocks of query rows per (batch, head), OpenBLAS GEMMs.
void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       const Tensor& lse);
void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv);
// Thin SVD via LAPACKE gesdd; u, s, vt are contiguous outputs (svd.cpp).
void svd(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt);

// Puts the kernels of the nn-op families (softmax, cross_entropy, layernorm, embedding, lora_matmul,
// svd, adam: a file each) into their slots; nn_kernels.cpp defines it, register.cpp calls it.
void register_nn_kernels(Backend& t);

}  // namespace lowrank::cpu
