// cuBLAS and cuSOLVER, loaded with dlopen on first use. Linking them outright costs every
// process of a CUDA build about half a second of start-up (their static initialisers and
// relocations), GPU or not, and test suites start hundreds of processes.
#pragma once
#include <cublas_v2.h>
#include <cusolverDn.h>

namespace lowrank::cuda {

struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  decltype(&cublasDgemm_v2) dgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasDgemmStridedBatched) dgemm_strided_batched;
};

struct CusolverApi {
  decltype(&cusolverDnCreate) create;
  decltype(&cusolverDnSetStream) set_stream;
  decltype(&cusolverDnSgesvd_bufferSize) sgesvd_buffer_size;
  decltype(&cusolverDnDgesvd_bufferSize) dgesvd_buffer_size;
  decltype(&cusolverDnSgesvd) sgesvd;
  decltype(&cusolverDnDgesvd) dgesvd;
};

// Loaded once; throws lowrank::Error naming the library file and dlopen's reason when missing.
const CublasApi& cublas_api();
const CusolverApi& cusolver_api();

}  // namespace lowrank::cuda
