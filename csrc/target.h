// The one place where the GPU build of csrc/ and its CPU test build differ.
//
// GPU build: a kernel is launched with <<<grid, block, 0, stream>>>; the bindings register their kernels
// under the CUDA dispatch key, accept CUDA tensors and launch on torch's current stream of the inputs'
// device (c10/cuda/CUDAStream.h, included by binding.h).
//
// Test build (-DSK_HOST_EMULATION; tests/cuda_ext/host_emulation, CPU CI only): the emulation's
// host_emulation_target.h defines the same four names for kernels run on the CPU, on CPU tensors.
#pragma once

#ifdef SK_HOST_EMULATION
#include "host_emulation_target.h"
#else
#define SK_LAUNCH(kernel, grid, block, stream) (kernel)<<<grid, block, 0, stream>>>
#define SK_DISPATCH_KEY CUDA
#define SK_ON_DEVICE(tensor) (tensor).is_cuda()
#define SK_CURRENT_STREAM(device) (c10::cuda::getCurrentCUDAStream((device).index()).stream())
#endif
