// Loads cuBLAS and cuSOLVER on first use (see cuda_libs.h for why): by soname through the
// program's run path, then from the toolkit's library folder the build saw.
#include "core/cuda/cuda_libs.h"

#include <dlfcn.h>

#include <string>

#include "core/error.h"

#ifndef LOWRANK_CUDA_LIBDIR
#define LOWRANK_CUDA_LIBDIR ""
#endif

namespace lowrank::cuda {
namespace {

void* open_library(const std::string& soname, const char* what) {
  if (void* h = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  std::string reason = dlerror();
  const std::string dir = LOWRANK_CUDA_LIBDIR;
  if (!dir.empty()) {
    if (void* h = dlopen((dir + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    reason += "; " + std::string(dlerror());
  }
  LR_FAIL("{} could not be loaded ({}): {}", what, soname, reason);
}

template <class Fn>
void resolve(void* lib, const char* name, Fn& fn, const char* what) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  LR_CHECK(fn != nullptr, "{} has no symbol {}: is the library older than the headers this build used?", what, name);
}

}  // namespace

const CublasApi& cublas_api() {
  static const CublasApi api = [] {
    const char* what = "cuBLAS";
    void* lib = open_library("libcublas.so." + std::to_string(CUBLAS_VER_MAJOR), what);
    CublasApi a{};
    resolve(lib, "cublasCreate_v2", a.create, what);
    resolve(lib, "cublasSetStream_v2", a.set_stream, what);
    resolve(lib, "cublasSetMathMode", a.set_math_mode, what);
    resolve(lib, "cublasSgemm_v2", a.sgemm, what);
    resolve(lib, "cublasDgemm_v2", a.dgemm, what);
    resolve(lib, "cublasSgemmStridedBatched", a.sgemm_strided_batched, what);
    resolve(lib, "cublasDgemmStridedBatched", a.dgemm_strided_batched, what);
    return a;
  }();
  return api;
}

const CusolverApi& cusolver_api() {
  static const CusolverApi api = [] {
    const char* what = "cuSOLVER";
    void* lib = open_library("libcusolver.so." + std::to_string(CUSOLVER_VER_MAJOR), what);
    CusolverApi a{};
    resolve(lib, "cusolverDnCreate", a.create, what);
    resolve(lib, "cusolverDnSetStream", a.set_stream, what);
    resolve(lib, "cusolverDnSgesvd_bufferSize", a.sgesvd_buffer_size, what);
    resolve(lib, "cusolverDnDgesvd_bufferSize", a.dgesvd_buffer_size, what);
    resolve(lib, "cusolverDnSgesvd", a.sgesvd, what);
    resolve(lib, "cusolverDnDgesvd", a.dgesvd, what);
    return a;
  }();
  return api;
}

}  // namespace lowrank::cuda
