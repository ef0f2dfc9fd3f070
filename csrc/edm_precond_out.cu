// The EDM output combination and its backward, the CUDA twins of sidkernels/ops/edm_precond_out/triton.py.
//
//   forward:   D  = c_skip * x + c_out * F        (fp32 from any float x and F)
//   backward:  gx = c_skip * gD,  gF = c_out * gD  (each optional, in its own dtype; one read of gD)
//
// The coefficients are computed per sample from sigma[n] in fp32 (device.cuh).
#include "device.cuh"

namespace sk {
namespace {

// ------------------------------------------------------------------ precond_out: D = c_skip x + c_out F
struct OutBody {
  SkBuf x, f, out;
  float c_skip, c_out;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float vx[W], vf[W];
    load<W, VEC>(x, g, vx);
    load<W, VEC>(f, g, vf);
#pragma unroll
    for (int k = 0; k < W; ++k) vx[k] = c_skip * vx[k] + c_out * vf[k];
    store<W, VEC>(out, g, vx);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
precond_out_kernel(Geometry geo, SkBuf x, SkBuf f, SkRows sigma, SkBuf out, int kind, float sigma_data) {
  const int64_t n = blockIdx.x;
  const Coefficients c = precond_coefficients(kind, load_row(sigma, n), sigma_data);
  OutBody body{x, f, out, c.c_skip, c.c_out};
  visit_sample<VEC>(n, geo, body);
}

// ------------------------------------------------------------------ precond_out backward: c_skip g, c_out g
struct OutBwdBody {
  SkBuf g, gx, gf;
  float c_skip, c_out;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t i) {
    float v[W], o[W];
    load<W, VEC>(g, i, v);
    if (gx.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) o[k] = c_skip * v[k];
      store<W, VEC>(gx, i, o);
    }
    if (gf.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) o[k] = c_out * v[k];
      store<W, VEC>(gf, i, o);
    }
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
precond_out_bwd_kernel(Geometry geo, SkBuf g, SkRows sigma, SkBuf gx, SkBuf gf, int kind, float sigma_data) {
  const int64_t n = blockIdx.x;
  const Coefficients c = precond_coefficients(kind, load_row(sigma, n), sigma_data);
  OutBwdBody body{g, gx, gf, c.c_skip, c.c_out};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace

cudaError_t launch_edm_precond_out(SkBuf x, SkBuf f, SkRows sigma, SkBuf out, int64_t n, int64_t d, int32_t kind,
                                   float sigma_data, cudaStream_t stream) {
  return launch_rows(precond_out_kernel<true>, precond_out_kernel<false>, aligned16(x, f, out), n, d, stream, x, f,
                     sigma, out, kind, sigma_data);
}

cudaError_t launch_edm_precond_out_bwd(SkBuf grad, SkRows sigma, SkBuf grad_x, SkBuf grad_f, int64_t n, int64_t d,
                                       int32_t kind, float sigma_data, cudaStream_t stream) {
  return launch_rows(precond_out_bwd_kernel<true>, precond_out_bwd_kernel<false>, aligned16(grad, grad_x, grad_f), n,
                     d, stream, grad, sigma, grad_x, grad_f, kind, sigma_data);
}

}  // namespace sk
