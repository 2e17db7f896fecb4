// Device names and parsing.
#include "core/device.h"

#include <ostream>

#include "core/cuda/cuda_api.h"
#include "core/error.h"

namespace lowrank {

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    size_t used = 0;
    int idx = -1;
    try {
      idx = std::stoi(s.substr(5), &used);
    } catch (const std::exception&) {
    }
    if (used == s.size() - 5 && idx >= 0) return cuda(idx);
  }
  LR_FAIL("unknown device '{}' (expected cpu, cuda or cuda:N)", s);
}

std::ostream& operator<<(std::ostream& os, const Device& d) {
  return os << d.str();
}

int cuda_device_count() {
  return cuda_runtime_device_count();
}
bool cuda_available() {
  return cuda_device_count() > 0;
}

}  // namespace lowrank
