// The C types between the host-only bindings (*.cpp) and the kernels' launchers (*.cu).
//
// Plain C types only, so the kernels build with nvcc without any torch header and the bindings build with a
// host C++ compiler without any CUDA device code.  Every launcher enqueues its kernels on the given stream and
// returns the launch status (cudaGetLastError); none of them synchronises.
//
// Memory contract (the same as the Triton kernels'): a sample-major buffer holds N samples of D elements
// each, sample n at elements [n*D, (n+1)*D) of `data` (contiguous or channels_last tensors).  All
// sample-major buffers of one call share that layout.  A buffer with data == NULL is absent (an output that
// was not asked for, or an optional input).  Math is fp32 whatever the storage dtype (abi.h).
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "abi.h"

// A sample-major [N, D] buffer.
struct SkBuf {
  void* data;
  int32_t dtype;
};

// A per-sample vector [N] read as data[n * stride] (stride 0: one value broadcast to every sample).
struct SkRows {
  const void* data;
  int32_t dtype;
  int64_t stride;
};
