// Fused noise injection (+ optional network-input scaling), the CUDA twin of sidkernels/ops/add_noise/triton.py.
//
//   eps[n, i] = the four-per-Philox normal stream of device.cuh (counter (i >> 2, n), element i & 3)
//   x_t       = x + sigma[n] * eps              stored in x_t's dtype
//   net_in    = c_in(sigma[n]) * x_t            optional, from the fp32 x_t, stored in the network dtype
//   eps                                          optional (debug/test output), fp32
//
// The seed is an int64 device scalar read in-kernel (no host sync).  eps depends only on (seed, n, i): not on
// the block size, the grid or the vector path, and it is the Triton kernel's stream.  A thread's 8 elements
// span at most three groups of four, so it runs Philox two or three times per 8 elements.
#include "device.cuh"

namespace sk {
namespace {

struct NoiseBody {
  SkBuf x, xt, net, eps;
  float s, c_in;
  uint32_t k0, k1, sample;
  int64_t start;  // global index of the sample's first element

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float v[W], e[W];
    load<W, VEC>(x, g, v);
    int64_t group = -1;
    Normals4 normals;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const int64_t i = g + k - start;
      if ((i >> 2) != group) {
        group = i >> 2;
        normals = philox_normals4(k0, k1, static_cast<uint32_t>(group), sample);
      }
      e[k] = normals.pick(i & 3);
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
                 static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(n), n * geo.d};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace

cudaError_t launch_add_noise(SkBuf x, SkRows sigma, const int64_t* seed, SkBuf xt, SkBuf net, SkBuf eps, int64_t n,
                             int64_t d, int32_t kind, float sigma_data, cudaStream_t stream) {
  return launch_rows(add_noise_kernel<true>, add_noise_kernel<false>, aligned16(x, xt, net, eps), n, d, stream, x,
                     sigma, seed, xt, net, eps, kind, sigma_data);
}

}  // namespace sk
