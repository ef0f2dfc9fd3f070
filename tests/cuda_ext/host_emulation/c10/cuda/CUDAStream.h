// Host emulation stand-in of torch's c10/cuda/CUDAStream.h (a CPU build of torch cannot compile the real one):
// the emulated launches are synchronous and have no stream (host_emulation_target.h).
#pragma once
