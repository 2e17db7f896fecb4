// CUDA kernel entry points, one per slot of core/dispatch.h's Backend; register.cpp puts them in
// the CUDA table. Each runs on its tensors' device stream and has a CPU twin in kernels/cpu that
// tests/cuda compares it against.
#pragma once
#include "core/dispatch.h"

namespace lowrank::cuda {

// elementwise.cu
void unary(UnaryOp op, const Tensor& x, const Tensor& out, double alpha);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, double alpha);
void copy(const Tensor& src, const Tensor& dst);
void fill(const Tensor& dst, double value);
// reduce.cu
void reduce(ReduceOp op, const Tensor& x, const Tensor& out, uint64_t axes_mask);
void argmax(const Tensor& x, const Tensor& out, int axis);
// gemm.cpp (cuBLAS)
void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c);
// softmax.cu
void softmax(const Tensor& x, const Tensor& y, bool log);
void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);
void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& losses,
                   const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& labels, int64_t ignore_index, const Tensor& lse,
                            const Tensor& grad_losses, const Tensor& grad_logits);
// layernorm.cu
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y, const Tensor& mean,
                const Tensor& rstd);
void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
                         const Tensor& gx, const Tensor& gw, const Tensor& gb);
// embedding.cu
bool embedding(const Tensor& weight, const Tensor& ids, const Tensor& out);
void embedding_backward(const Tensor& grad, const Tensor& ids, const Tensor& grad_weight);
// random.cu
void random(RandomKind kind, uint64_t seed, uint64_t offset, const Tensor& out);
// adam.cu
void adam_step(const AdamArgs& a, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v);
// lora_matmul.cu
void lora_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& a, const Tensor& bm, double scale,
                  double base_scale, const Tensor& y, const Tensor& xa);
void lora_backward(const Tensor& x, const Tensor& w, const Tensor& a, const Tensor& bm, const Tensor& xa,
                   const Tensor& gy, double scale, double base_scale, const Tensor& gx, const Tensor& gw,
                   const Tensor& gb, const Tensor& ga, const Tensor& gbm);
// attention.cu
void attention_forward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                       const Tensor& lse);
void attention_backward(const AttentionArgs& a, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv);
// svd.cpp (cuSOLVER)
void svd(const Tensor& a, const Tensor& u, const Tensor& s, const Tensor& vt);
// register.cpp
void to_host(const void* src, void* dst, size_t nbytes, Device src_device);
void from_host(const void* src, void* dst, size_t nbytes, Device dst_device);
void synchronize(Device d);

}  // namespace lowrank::cuda
