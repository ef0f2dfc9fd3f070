// Host emulation of the half-precision API that csrc/ uses: storage type and round-to-nearest-even
// conversions (IEEE binary16 through the compiler's _Float16).
#pragma once

#include <stdint.h>
#include <string.h>

struct __half {
  uint16_t bits;
};

inline float __half2float(__half h) {
  _Float16 v;
  memcpy(&v, &h.bits, sizeof v);
  return static_cast<float>(v);
}
inline __half __float2half_rn(float f) {
  const _Float16 v = static_cast<_Float16>(f);
  __half h;
  memcpy(&h.bits, &v, sizeof v);
  return h;
}
inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
