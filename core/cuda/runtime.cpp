// The CUDA runtime hooks of core/: device discovery that never throws, error texts for the
// CUDA_CHECK family, and per device one stream with its lazily created cuBLAS/cuSOLVER handles.
#include <array>
#include <mutex>
#include <string>

#include "core/cuda/cuda_context.h"
#include "core/cuda/cuda_libs.h"
#include "core/error.h"

namespace lowrank {
namespace {

constexpr int kMaxDevices = 64;

struct RuntimeInfo {
  int count = 0;
  std::string reason;  // why there are no devices
};

// Asked once: the answer does not change while the process runs, and asking a machine without a
// driver is slow.
const RuntimeInfo& runtime_info() {
  static const RuntimeInfo info = [] {
    RuntimeInfo r;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear it, so that it never surfaces at a later launch check
      r.reason = cudaGetErrorString(e);
      return r;
    }
    if (n <= 0) {
      r.reason = "no CUDA-capable device is detected";
      return r;
    }
    r.count = n < kMaxDevices ? n : kMaxDevices;
    return r;
  }();
  return info;
}

struct DeviceState {
  std::mutex mu;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
  int sms = 0;
};

// Never destroyed: tensors freed during static destruction may still reach for a stream.
std::array<DeviceState, kMaxDevices>& device_states() {
  static auto* states = new std::array<DeviceState, kMaxDevices>();
  return *states;
}

thread_local int t_current_device = -1;

const char* cublas_status_text(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

const char* cusolver_status_text(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS:
      return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default:
      return "cuSOLVER status";
  }
}

[[noreturn]] void fail(const char* library, const std::string& what, const char* expr, const char* func,
                       const char* file, int line) {
  throw_error(file, line, detail::format("{} error {} in `{}` ({})", library, what, expr, func));
}

// Runs `make` once per device under its lock.
template <class T, class F>
T lazily(int index, T DeviceState::*member, F&& make) {
  DeviceState& st = device_states()[static_cast<size_t>(index)];
  std::lock_guard<std::mutex> lock(st.mu);
  if (!(st.*member)) st.*member = make(st);
  return st.*member;
}

}  // namespace

// ---- core/cuda/cuda_api.h

int cuda_runtime_device_count() {
  return runtime_info().count;
}

std::string cuda_unavailable_reason(int index) {
  const RuntimeInfo& info = runtime_info();
  if (info.count == 0) return info.reason;
  if (index < 0 || index >= info.count)
    return detail::format("this machine has {} CUDA device{} (cuda:0{})", info.count, info.count == 1 ? "" : "s",
                          info.count == 1 ? std::string() : " to cuda:" + std::to_string(info.count - 1));
  return "";
}

void cuda_require_device(int index) {
  const RuntimeInfo& info = runtime_info();
  if (index >= 0 && index < info.count) [[likely]]
    return;
  LR_FAIL("CUDA device cuda:{} is not available: {}", index, cuda_unavailable_reason(index));
}

void cuda_synchronize() {
  for (int i = 0; i < runtime_info().count; ++i) {
    DeviceState& st = device_states()[static_cast<size_t>(i)];
    cudaStream_t s;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      s = st.stream;
    }
    if (s) {
      cuda::set_device(i);
      CUDA_CHECK(cudaStreamSynchronize(s));
    }
  }
}

namespace cuda {

void throw_cuda_error(cudaError_t e, const char* expr, const char* func, const char* file, int line) {
  fail("CUDA", detail::format("{}: {}", cudaGetErrorName(e), cudaGetErrorString(e)), expr, func, file, line);
}
void throw_cublas_error(cublasStatus_t s, const char* expr, const char* func, const char* file, int line) {
  fail("cuBLAS", cublas_status_text(s), expr, func, file, line);
}
void throw_cusolver_error(cusolverStatus_t s, const char* expr, const char* func, const char* file, int line) {
  fail("cuSOLVER", detail::format("{} ({})", cusolver_status_text(s), static_cast<int>(s)), expr, func, file, line);
}

void set_device(int index) {
  if (t_current_device == index) [[likely]]
    return;
  cuda_require_device(index);
  CUDA_CHECK(cudaSetDevice(index));
  t_current_device = index;
}

cudaStream_t stream(int index) {
  set_device(index);
  return lazily(index, &DeviceState::stream, [](DeviceState&) {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  });
}

cublasHandle_t cublas(int index) {
  cudaStream_t s = stream(index);
  return lazily(index, &DeviceState::cublas, [s](DeviceState&) {
    cublasHandle_t h = nullptr;
    const CublasApi& api = cublas_api();
    CUBLAS_CHECK(api.create(&h));
    CUBLAS_CHECK(api.set_stream(h, s));
    CUBLAS_CHECK(api.set_math_mode(h, CUBLAS_DEFAULT_MATH));
    return h;
  });
}

cusolverDnHandle_t cusolver(int index) {
  cudaStream_t s = stream(index);
  return lazily(index, &DeviceState::cusolver, [s](DeviceState&) {
    cusolverDnHandle_t h = nullptr;
    const CusolverApi& api = cusolver_api();
    CUSOLVER_CHECK(api.create(&h));
    CUSOLVER_CHECK(api.set_stream(h, s));
    return h;
  });
}

int sm_count(int index) {
  set_device(index);
  return lazily(index, &DeviceState::sms, [index](DeviceState&) {
    int n = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, index));
    return n > 0 ? n : 1;
  });
}

}  // namespace cuda
}  // namespace lowrank
