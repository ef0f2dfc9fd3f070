// EDM input scaling and its backward, the CUDA twins of sidkernels/ops/edm_precond_in/triton.py.
//
//   forward:   y  = c_in * x                      (y's dtype);  c_noise[n] (fp32, written by chunk 0)
//   backward:  gx = c_in * gy + addend            (gx's dtype; addend = the noise op's d x_t, optional)
//
// The coefficients are computed per sample from sigma[n] in fp32 (device.cuh).
#include "device.cuh"

namespace sk {
namespace {

// ------------------------------------------------------------------ precond_in: y = c_in x, c_noise[n]
struct InBody {
  SkBuf x, y;
  float c_in;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float v[W];
    load<W, VEC>(x, g, v);
#pragma unroll
    for (int k = 0; k < W; ++k) v[k] *= c_in;
    store<W, VEC>(y, g, v);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
precond_in_kernel(Geometry geo, SkBuf x, SkRows sigma, SkBuf y, float* c_noise, int kind, float sigma_data) {
  const int64_t n = blockIdx.x;
  const float s = load_row(sigma, n);
  InBody body{x, y, precond_coefficients(kind, s, sigma_data).c_in};
  visit_sample<VEC>(n, geo, body);
  if (blockIdx.y == 0 && threadIdx.x == 0) c_noise[n] = precond_c_noise(kind, s);
}

// ------------------------------------------------------------------ precond_in backward: gx = c_in gy + addend
struct InBwdBody {
  SkBuf gy, addend, gx;
  float c_in;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float v[W];
    load<W, VEC>(gy, g, v);
#pragma unroll
    for (int k = 0; k < W; ++k) v[k] *= c_in;
    if (addend.data != nullptr) {
      float a[W];
      load<W, VEC>(addend, g, a);
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] += a[k];
    }
    store<W, VEC>(gx, g, v);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
precond_in_bwd_kernel(Geometry geo, SkBuf gy, SkRows sigma, SkBuf addend, SkBuf gx, int kind, float sigma_data) {
  const int64_t n = blockIdx.x;
  InBwdBody body{gy, addend, gx, precond_coefficients(kind, load_row(sigma, n), sigma_data).c_in};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace

cudaError_t launch_edm_precond_in(SkBuf x, SkRows sigma, SkBuf y, float* c_noise, int64_t n, int64_t d, int32_t kind,
                                  float sigma_data, cudaStream_t stream) {
  return launch_rows(precond_in_kernel<true>, precond_in_kernel<false>, aligned16(x, y), n, d, stream, x, sigma, y,
                     c_noise, kind, sigma_data);
}

cudaError_t launch_edm_precond_in_bwd(SkBuf grad_y, SkRows sigma, SkBuf addend, SkBuf grad_x, int64_t n, int64_t d,
                                      int32_t kind, float sigma_data, cudaStream_t stream) {
  return launch_rows(precond_in_bwd_kernel<true>, precond_in_bwd_kernel<false>, aligned16(grad_y, addend, grad_x), n,
                     d, stream, grad_y, sigma, addend, grad_x, kind, sigma_data);
}

}  // namespace sk
