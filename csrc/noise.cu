// Fused noise injection (+ optional network-input scaling), the CUDA twin of sidkernels/kernels/noise.py.
//
//   eps[i]  = Philox 4x32-10 Box-Muller normal of (seed, i), i = absolute element index (common.cuh)
//   x_t     = x + sigma[n] * eps              stored in x_t's dtype
//   net_in  = c_in(sigma[n]) * x_t            optional, from the fp32 x_t, stored in the network dtype
//   eps                                        optional (debug/test output), fp32
//
// The seed is an int64 device scalar read in-kernel (no host sync).  Because i is the element's position in
// memory, eps depends only on (seed, i): not on the block size, the grid or the vector path, and it is the
// same stream as the Triton kernel's tl.randn(seed, i).
#include "common.cuh"

namespace sk {
namespace {

struct NoiseBody {
  SkBuf x, xt, net, eps;
  float s, c_in;
  uint32_t k0, k1;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float v[W], e[W];
    load<W, VEC>(x, g, v);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      e[k] = philox_normal(k0, k1, g + k);
      v[k] = v[k] + s * e[k];
    }
    store<W, VEC>(xt, g, v);
    if (net.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] *= c_in;
      store<W, VEC>(net, g, v);
    }
    if (eps.data != nullptr) store<W, VEC>(eps, g, e);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
add_noise_kernel(Geometry geo, SkBuf x, SkRows sigma, const int64_t* seed, SkBuf xt, SkBuf net, SkBuf eps,
                 int kind, float sigma_data) {
  const int64_t n = blockIdx.x;
  const uint64_t key = static_cast<uint64_t>(*seed);
  const float s = load_row(sigma, n);
  NoiseBody body{x, xt, net, eps, s, precond_coefficients(kind, s, sigma_data).c_in,
                 static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace
}  // namespace sk

extern "C" cudaError_t sk_add_noise(SkBuf x, SkRows sigma, const int64_t* seed, SkBuf xt, SkBuf net, SkBuf eps,
                                    int64_t n, int64_t d, int32_t kind, float sigma_data, cudaStream_t stream) {
  return sk::launch_rows(sk::add_noise_kernel<true>, sk::add_noise_kernel<false>, sk::aligned16(x, xt, net, eps), n, d,
                         stream, x, sigma, seed, xt, net, eps, kind, sigma_data);
}
