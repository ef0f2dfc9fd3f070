// Kernels that check the host emulation itself (test_host_emulation.py): that it computes the block
// reduction of csrc/device.cuh exactly as the GPU would order it, and that it reports what a GPU run would get
// wrong (a divergent barrier, a launch beyond the limits, an out-of-bounds or misaligned access).
// Built as C++ with the emulation's flags and loaded with ctypes; every entry point returns the launch's
// cudaGetLastError().
#include "device.cuh"

namespace {

// out[0] = sum of in[0 .. blockDim), out[1] = sum of in[i]^2, via sk::block_sum; one block.
__global__ void block_sum_kernel(const float* in, float* out) {
  float v[2] = {in[threadIdx.x], in[threadIdx.x] * in[threadIdx.x]};
  sk::block_sum(v);
  if (threadIdx.x == 0) {
    out[0] = v[0];
    out[1] = v[1];
  }
}

// Thread `quitter` leaves before the barrier that everyone else waits at.
__global__ void divergent_barrier_kernel(int quitter, float* out) {
  if (int(threadIdx.x) == quitter) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// The upper half of every warp leaves before a full-warp shuffle.
__global__ void partial_warp_kernel(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = sk::warp_sum(1.0f);
}

__global__ void empty_kernel() {}

// Reads element n of an n-element buffer.
__global__ void read_past_end_kernel(const float* in, int64_t n, float* out) { out[0] = in[n]; }

// A 16-byte vector load of 8 bf16 values at element `offset` (misaligned unless offset % 8 == 0).
__global__ void vector_load_kernel(const void* in, int64_t offset, float* out) {
  float v[sk::kVec];
  sk::load<sk::kVec, true>(SkBuf{const_cast<void*>(in), SK_BFLOAT16}, offset, v);
  out[0] = v[0];
}

}  // namespace

extern "C" {

int probe_block_sum(const float* in, int threads, float* out) {
  SK_LAUNCH(block_sum_kernel, 1, threads, nullptr)(in, out);
  return cudaGetLastError();
}

int probe_divergent_barrier(int threads, int quitter, float* out) {
  SK_LAUNCH(divergent_barrier_kernel, 1, threads, nullptr)(quitter, out);
  return cudaGetLastError();
}

int probe_partial_warp(int threads, float* out) {
  SK_LAUNCH(partial_warp_kernel, 1, threads, nullptr)(out);
  return cudaGetLastError();
}

int probe_launch(unsigned grid_x, unsigned grid_y, unsigned threads) {
  SK_LAUNCH(empty_kernel, dim3(grid_x, grid_y), threads, nullptr)();
  return cudaGetLastError();
}

int probe_read_past_end(const float* in, int64_t n, float* out) {
  SK_LAUNCH(read_past_end_kernel, 1, 1, nullptr)(in, n, out);
  return cudaGetLastError();
}

int probe_vector_load(const void* in, int64_t offset, float* out) {
  SK_LAUNCH(vector_load_kernel, 1, 1, nullptr)(in, offset, out);
  return cudaGetLastError();
}

}  // extern "C"
