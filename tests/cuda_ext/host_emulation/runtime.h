// Host emulation of the CUDA device model, so that CPU CI can run the kernels of csrc/ (not only compile
// them) and check them against the references.  Built by tests/cuda_ext/host_emulation/build.py: the *.cu
// files are compiled as C++ with -DSK_HOST_EMULATION and this directory first on the include path, where
// cuda_runtime.h, cuda_runtime_api.h, cuda_fp16.h, cuda_bf16.h and c10/cuda/CUDAStream.h are stand-ins and
// host_emulation_target.h is what csrc/target.h includes in this build.
//
// Execution model (runtime.cpp):
//   * a launch runs its blocks one after another; the threads of a block are cooperative fibers that
//     switch only at barriers, so `__shared__` (a static) is the running block's shared memory;
//   * __syncthreads waits for every thread of the block, __shfl_xor_sync for all 32 lanes of the warp
//     (only the full mask is emulated).  A barrier that some thread can never reach (one that exited, or
//     one waiting at another barrier) is a deadlock on a GPU; here it fails the launch with a message;
//   * a launch configuration beyond the GPU's limits (block > 1024 threads, grid.y or grid.z > 65535,
//     an empty grid) fails with cudaErrorInvalidConfiguration, read back by cudaGetLastError.
// Launches are synchronous and serialised; the stream argument is ignored.
//
// Differences from a GPU that the tests allow for: rsqrtf is exact (the GPU's is within 2 ulp) and the
// transcendental functions are the host's libm (sinpif / cospif through double precision).
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <functional>
#include <tuple>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // blocks run one at a time: a static is the running block's shared memory

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// The running thread's built-in variables (set by the scheduler before it resumes a fiber).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

// ------------------------------------------------------------------ device functions
using std::isnan;
template <class T>
inline T min(T a, T b) { return b < a ? b : a; }
template <class T>
inline T max(T a, T b) { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float sinpif(float x) { return float(std::sin(M_PI * double(x))); }
inline float cospif(float x) { return float(std::cos(M_PI * double(x))); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

namespace sk_emu {
void sync_block();
float shfl_xor(unsigned mask, float value, int lane_mask, int width);
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& thread_body);

// A kernel launch: `launch(kernel, grid, block, shared, stream)(args...)` runs kernel(args...) on every
// thread of the grid, each call with its own copies of the parameters (as a GPU launch copies them).
template <class... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared_bytes;

  template <class... A>
  void operator()(A&&... args) const {
    const std::tuple<P...> params(static_cast<P>(args)...);
    run_grid(grid, block, shared_bytes, [&] { std::apply(kernel, params); });
  }
};

template <class... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t) {
  return Launch<P...>{kernel, grid, block, shared_bytes};
}
}  // namespace sk_emu

inline void __syncthreads() { sk_emu::sync_block(); }
inline float __shfl_xor_sync(unsigned mask, float value, int lane_mask, int width = 32) {
  return sk_emu::shfl_xor(mask, value, lane_mask, width);
}
