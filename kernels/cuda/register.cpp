// Fills every CUDA slot of the kernel table and installs the caching allocator (called once
// from backend_table()). Touches no CUDA API here, so CPU-only programs pay nothing for it.
#include "core/cuda/cuda_context.h"
#include "core/storage.h"
#include "kernels/cuda/cuda_kernels.h"

namespace lowrank {
namespace cuda {

void to_host(const void* src, void* dst, size_t nbytes, Device src_device) {
  cudaStream_t s = stream(src_device);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));  // the caller reads dst next
}

void from_host(const void* src, void* dst, size_t nbytes, Device dst_device) {
  // From pageable memory the call returns once src has been staged, so the caller may free or
  // reuse src at once; later kernels on the stream are ordered after the copy.
  CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream(dst_device)));
}

void synchronize(Device d) {
  CUDA_CHECK(cudaStreamSynchronize(stream(d)));
}

}  // namespace cuda

void register_cuda_kernels(Backend& t) {
  t.unary = cuda::unary;
  t.binary = cuda::binary;
  t.copy = cuda::copy;
  t.fill = cuda::fill;
  t.reduce = cuda::reduce;
  t.argmax = cuda::argmax;
  t.gemm = cuda::gemm;
  t.softmax = cuda::softmax;
  t.softmax_backward = cuda::softmax_backward;
  t.cross_entropy = cuda::cross_entropy;
  t.cross_entropy_backward = cuda::cross_entropy_backward;
  t.layer_norm = cuda::layer_norm;
  t.layer_norm_backward = cuda::layer_norm_backward;
  t.embedding = cuda::embedding;
  t.embedding_backward = cuda::embedding_backward;
  t.random = cuda::random;
  t.adam_step = cuda::adam_step;
  t.lora_forward = cuda::lora_forward;
  t.lora_backward = cuda::lora_backward;
  t.attention_forward = cuda::attention_forward;
  t.attention_backward = cuda::attention_backward;
  t.svd = cuda::svd;
  t.to_host = cuda::to_host;
  t.from_host = cuda::from_host;
  t.synchronize = cuda::synchronize;
  set_allocator(DeviceType::CUDA, cuda_caching_allocator());
}

}  // namespace lowrank
