// Run-time checks of the x86 instruction sets that vector code paths are chosen by: the build
// targets the x86-64 baseline, and AVX2/AVX-512 paths, compiled in target regions, are taken only
// where the CPU has them. Each is decided once. False on other architectures and compilers.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define LR_CPU_SUPPORTS(feature) (__builtin_cpu_init(), __builtin_cpu_supports(feature) != 0)
#else
#define LR_CPU_SUPPORTS(feature) false
#endif

namespace lowrank {

inline bool cpu_has_avx2() {
  static const bool yes = LR_CPU_SUPPORTS("avx2");
  return yes;
}
inline bool cpu_has_avx2_fma() {
  static const bool yes = LR_CPU_SUPPORTS("avx2") && LR_CPU_SUPPORTS("fma");
  return yes;
}
inline bool cpu_has_avx512f() {
  static const bool yes = LR_CPU_SUPPORTS("avx512f");
  return yes;
}

}  // namespace lowrank

#undef LR_CPU_SUPPORTS
