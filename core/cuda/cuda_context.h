// The CUDA side of core/ for core/cuda and kernels/cuda only: error-checking macros, and per
// device the one stream every kernel runs on and the cuBLAS / cuSOLVER handles bound to it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "core/cuda/cuda_api.h"
#include "core/device.h"

namespace lowrank::cuda {

// Throws lowrank::Error: "<library> error <code name>: <text> in `expr` (function, file:line)".
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* func, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* expr, const char* func, const char* file, int line);
[[noreturn]] void throw_cusolver_error(cusolverStatus_t s, const char* expr, const char* func, const char* file,
                                       int line);

// Makes device `index` current for this thread (validated first; cheap when it already is).
void set_device(int index);
// The device's stream, created on first use (non-blocking: it never waits for the legacy
// default stream). Also makes the device current.
cudaStream_t stream(int index);
inline cudaStream_t stream(Device d) {
  return stream(d.index);
}
// Handles created on first use and bound to stream(index); math mode is the default FP32 one
// (no TF32), so that results match the CPU within f32 rounding.
cublasHandle_t cublas(int index);
cusolverDnHandle_t cusolver(int index);
// Multiprocessor count of the device (for sizing grid-stride launches).
int sm_count(int index);

}  // namespace lowrank::cuda

#define CUDA_CHECK(expr)                                                             \
  do {                                                                               \
    cudaError_t lr_e_ = (expr);                                                      \
    if (lr_e_ != cudaSuccess) [[unlikely]]                                           \
      ::lowrank::cuda::throw_cuda_error(lr_e_, #expr, __func__, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                             \
  do {                                                                                 \
    cublasStatus_t lr_s_ = (expr);                                                     \
    if (lr_s_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                   \
      ::lowrank::cuda::throw_cublas_error(lr_s_, #expr, __func__, __FILE__, __LINE__); \
  } while (0)

#define CUSOLVER_CHECK(expr)                                                             \
  do {                                                                                   \
    cusolverStatus_t lr_s_ = (expr);                                                     \
    if (lr_s_ != CUSOLVER_STATUS_SUCCESS) [[unlikely]]                                   \
      ::lowrank::cuda::throw_cusolver_error(lr_s_, #expr, __func__, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
