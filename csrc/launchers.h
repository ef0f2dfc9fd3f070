// The C API between the host-only binding (binding.cpp) and the CUDA kernels (*.cu).
//
// Plain C types only, so the kernels build with nvcc without any torch header and the binding builds
// with a host C++ compiler without any CUDA-device header.  Every launcher enqueues its kernels on the
// given stream and returns the launch status (cudaGetLastError); none of them synchronises.
//
// Memory contract (the same as the Triton kernels'): a sample-major buffer holds N samples of D
// elements each, sample n at elements [n*D, (n+1)*D) of `data` (contiguous or channels_last tensors).
// All sample-major buffers of one call share that layout.  A buffer with data == NULL is absent (an
// output that was not asked for, or an optional input).  Math is fp32 whatever the storage dtype.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Storage dtypes of the kernels' tensors.
enum { SK_FLOAT32 = 0, SK_FLOAT16 = 1, SK_BFLOAT16 = 2 };

// A sample-major [N, D] buffer.
typedef struct {
  void* data;
  int32_t dtype;
} SkBuf;

// A per-sample vector [N] read as data[n * stride] (stride 0: one value broadcast to every sample).
typedef struct {
  const void* data;
  int32_t dtype;
  int64_t stride;
} SkRows;

// Preconditioning kinds, as in the schemas: 0 edm, 1 vp, 2 ve.
enum { SK_EDM = 0, SK_VP = 1, SK_VE = 2 };

// x_t = x + sigma[n] eps, net = c_in(sigma[n]) x_t (optional), eps (optional, fp32 only);
// eps[i] = Philox 4x32-10 Box-Muller normal of (*seed, i), i the absolute element index.
cudaError_t sk_add_noise(SkBuf x, SkRows sigma, const int64_t* seed, SkBuf xt, SkBuf net, SkBuf eps,
                         int64_t n, int64_t d, int32_t kind, float sigma_data, cudaStream_t stream);

// y = c_in x; c_noise[n] (fp32, contiguous [N]).
cudaError_t sk_precond_in(SkBuf x, SkRows sigma, SkBuf y, float* c_noise, int64_t n, int64_t d,
                          int32_t kind, float sigma_data, cudaStream_t stream);

// gx = c_in gy + addend (addend optional).
cudaError_t sk_precond_in_bwd(SkBuf grad_y, SkRows sigma, SkBuf addend, SkBuf grad_x, int64_t n, int64_t d,
                              int32_t kind, float sigma_data, cudaStream_t stream);

// out = c_skip x + c_out f.
cudaError_t sk_precond_out(SkBuf x, SkBuf f, SkRows sigma, SkBuf out, int64_t n, int64_t d, int32_t kind,
                           float sigma_data, cudaStream_t stream);

// gx = c_skip g, gf = c_out g (each optional).
cudaError_t sk_precond_out_bwd(SkBuf grad, SkRows sigma, SkBuf grad_x, SkBuf grad_f, int64_t n, int64_t d,
                               int32_t kind, float sigma_data, cudaStream_t stream);

// Number of fp32 scratch elements sk_sid_loss / sk_fake_score_loss need for an [n, d] problem
// (0 when every sample fits one block and the loss is finished in a single launch).
int64_t sk_sid_loss_workspace(int64_t n, int64_t d);
int64_t sk_fake_score_loss_workspace(int64_t n, int64_t d);

// SiD generator loss: per-sample loss[n] and scale[n] = valid/w_n (fp32, contiguous [N]) and the
// bracketed gradients ga, gb, gx (each optional).  See losses.cu for the math.
cudaError_t sk_sid_loss(SkBuf a, SkBuf b, SkBuf x, SkBuf ga, SkBuf gb, SkBuf gx, float* loss, float* scale,
                        float* workspace, int64_t n, int64_t d, float alpha, float weight_clip, int32_t normalize,
                        cudaStream_t stream);

// Fake-score loss: loss[n], scale[n] = valid * 2 lambda_n and the residual r = den - y (optional).
cudaError_t sk_fake_score_loss(SkBuf den, SkBuf y, SkRows sigma, SkBuf r, float* loss, float* scale,
                               float* workspace, int64_t n, int64_t d, float sigma_data, cudaStream_t stream);

// out = (scale[n] == 0) ? 0 : coef * grad_out[n] * scale[n] * src.
cudaError_t sk_rowscale(SkRows grad_out, SkRows scale, SkBuf src, SkBuf out, int64_t n, int64_t d, float coef,
                        cudaStream_t stream);

// Per-sample distance of kind 0 l2, 1 l1, 2 pseudo-Huber (constant c > 0): dist[n] and the backward's
// factor scale[n] (fp32, contiguous [N]).  See distance.cu for the math.
int64_t sk_distance_workspace(int64_t n, int64_t d);
cudaError_t sk_distance(SkBuf a, SkBuf b, float* dist, float* scale, float* workspace, int64_t n, int64_t d,
                        int32_t kind, float c, cudaStream_t stream);

// ga = grad_out[n] scale[n] phi(a - b), gb = -ga (each optional); phi = identity, or sign for kind 1 (l1).
cudaError_t sk_distance_bwd(SkRows grad_out, SkRows scale, SkBuf a, SkBuf b, SkBuf ga, SkBuf gb, int64_t n,
                            int64_t d, int32_t kind, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
