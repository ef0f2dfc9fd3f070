// Fused EDM / VP / VE preconditioning (SID.md 5.1), the CUDA twin of sidkernels/kernels/precond.py.
//
//   forward in :  y  = c_in * x                      (y's dtype);  c_noise[n] (fp32, written by chunk 0)
//   backward in:  gx = c_in * gy + addend            (gx's dtype; addend = the noise op's d x_t, optional)
//   forward out:  D  = c_skip * x + c_out * F        (fp32 from any float x and F)
//   backward out: gx = c_skip * gD,  gF = c_out * gD  (each optional, in its own dtype; one read of gD)
//
// The coefficients are computed per sample from sigma[n] in fp32 (common.cuh).
#include "common.cuh"

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
}  // namespace sk

extern "C" cudaError_t sk_precond_in(SkBuf x, SkRows sigma, SkBuf y, float* c_noise, int64_t n, int64_t d,
                                     int32_t kind, float sigma_data, cudaStream_t stream) {
  return sk::launch_rows(sk::precond_in_kernel<true>, sk::precond_in_kernel<false>, sk::aligned16(x, y), n, d, stream,
                         x, sigma, y, c_noise, kind, sigma_data);
}

extern "C" cudaError_t sk_precond_in_bwd(SkBuf grad_y, SkRows sigma, SkBuf addend, SkBuf grad_x, int64_t n,
                                         int64_t d, int32_t kind, float sigma_data, cudaStream_t stream) {
  return sk::launch_rows(sk::precond_in_bwd_kernel<true>, sk::precond_in_bwd_kernel<false>,
                         sk::aligned16(grad_y, addend, grad_x), n, d, stream, grad_y, sigma, addend, grad_x, kind,
                         sigma_data);
}

extern "C" cudaError_t sk_precond_out(SkBuf x, SkBuf f, SkRows sigma, SkBuf out, int64_t n, int64_t d,
                                      int32_t kind, float sigma_data, cudaStream_t stream) {
  return sk::launch_rows(sk::precond_out_kernel<true>, sk::precond_out_kernel<false>, sk::aligned16(x, f, out), n, d,
                         stream, x, f, sigma, out, kind, sigma_data);
}

extern "C" cudaError_t sk_precond_out_bwd(SkBuf grad, SkRows sigma, SkBuf grad_x, SkBuf grad_f, int64_t n,
                                          int64_t d, int32_t kind, float sigma_data, cudaStream_t stream) {
  return sk::launch_rows(sk::precond_out_bwd_kernel<true>, sk::precond_out_bwd_kernel<false>,
                         sk::aligned16(grad, grad_x, grad_f), n, d, stream, grad, sigma, grad_x, grad_f, kind,
                         sigma_data);
}
