// What csrc/target.h means in the host emulation build (see csrc/target.h and runtime.h): kernels run on the
// CPU through the fiber scheduler, the bindings register their kernels for CPU tensors under the CPU dispatch
// key, and there is no stream.
#pragma once

// SK_LAUNCH is expanded in the kernels (*.cu), which include runtime.h through the stand-in cuda_runtime.h.
#define SK_LAUNCH(kernel, grid, block, stream) ::sk_emu::launch(kernel, grid, block, 0, stream)
#define SK_DISPATCH_KEY CPU
#define SK_ON_DEVICE(tensor) (tensor).is_cpu()
#define SK_CURRENT_STREAM(device) (static_cast<cudaStream_t>(nullptr))
