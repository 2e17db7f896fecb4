// Where a tensor lives: the CPU, or CUDA device n.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

namespace lowrank {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };
constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  std::string str() const;                    // "cpu", "cuda:0"
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"; throws on anything else
};

std::ostream& operator<<(std::ostream& os, const Device& d);

// True when this build has the CUDA backend and a GPU answers.
bool cuda_available();
int cuda_device_count();

}  // namespace lowrank
