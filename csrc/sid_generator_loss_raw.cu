// The SiD generator loss fused from the networks' raw outputs, the CUDA twin of
// sidkernels/ops/sid_generator_loss_raw/triton.py.
//
// F_phi, F_psi = the teacher's and the fake score's raw outputs at x_t, c_skip/c_out the preconditioning
// coefficients at sigma[n] (fp32 math):
//     a - b  = c_out (F_phi - F_psi),   a - x_g = c_skip x_t + c_out F_phi - x_g
//     w_n    = max(mean_i |a - x_g|, clip),   loss_n = sum_i (a - b)((a - x_g) - alpha (a - b)) / w_n
//     dl/dF_phi = c_out [(a - x_g) + (1 - 2 alpha)(a - b)] / w_n    dl/dF_psi = c_out [2 alpha (a - b) - (a - x_g)] / w_n
//     dl/dx_t   = c_skip (a - b) / w_n                               dl/dx_g   = -(a - b) / w_n
// The forward reads the four inputs once and writes per (sample, chunk) fp32 partials (sum|a - x_g|, the
// numerator, the NaN count), then loss_n and scale_n = 1/w_n (0 for a sample with a NaN: the official drop),
// in the same two stages as sid_generator_loss.cu.  The backward reads the inputs once more and writes each
// requested gradient once; no a, b or D is stored.
#include "device.cuh"

namespace sk {
namespace {

constexpr int kRawPartials = 3;  // sum |a - x_g|, loss numerator, NaN count

__device__ __forceinline__ void raw_finish(const float (&sums)[kRawPartials], int64_t d, float clip, int normalize,
                                           float* loss, float* scale) {
  const float w = normalize ? fmaxf(sums[0] / float(d), clip) : 1.0f;
  const bool keep = sums[2] == 0.0f;
  *loss = keep ? sums[1] / w : 0.0f;
  *scale = keep ? 1.0f / w : 0.0f;
}

// (a - b, a - x_g) of W elements; NaN flags added to `nans`.
template <int W, bool VEC>
__device__ __forceinline__ void raw_differences(const SkBuf& fp, const SkBuf& fq, const SkBuf& xt, const SkBuf& xg,
                                                const Coefficients& c, int64_t g, float (&d_ab)[W], float (&d_ax)[W],
                                                float& nans) {
  float vq[W], vt[W], vg[W];
  load<W, VEC>(fp, g, d_ab);
  load<W, VEC>(fq, g, vq);
  load<W, VEC>(xt, g, vt);
  load<W, VEC>(xg, g, vg);
#pragma unroll
  for (int k = 0; k < W; ++k) {
    nans += (isnan(d_ab[k]) || isnan(vq[k]) || isnan(vt[k]) || isnan(vg[k])) ? 1.0f : 0.0f;
    d_ax[k] = c.c_skip * vt[k] + c.c_out * d_ab[k] - vg[k];
    d_ab[k] = c.c_out * (d_ab[k] - vq[k]);
  }
}

struct RawBody {
  SkBuf fp, fq, xt, xg;
  Coefficients c;
  float alpha;
  float abs_sum = 0.0f, num = 0.0f, nans = 0.0f;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float d_ab[W], d_ax[W];
    raw_differences<W, VEC>(fp, fq, xt, xg, c, g, d_ab, d_ax, nans);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      abs_sum += fabsf(d_ax[k]);
      num += d_ab[k] * (d_ax[k] - alpha * d_ab[k]);
    }
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
raw_loss_kernel(Geometry geo, SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg, SkRows sigma, float* part, float* loss,
                float* scale, int kind, float sigma_data, float alpha, float clip, int normalize) {
  const int64_t n = blockIdx.x;
  RawBody body{fp, fq, xt, xg, precond_coefficients(kind, load_row(sigma, n), sigma_data), alpha};
  visit_sample<VEC>(n, geo, body);
  float sums[kRawPartials] = {body.abs_sum, body.num, body.nans};
  block_sum(sums);
  if (threadIdx.x != 0) return;
  if (gridDim.y == 1) {
    raw_finish(sums, geo.d, clip, normalize, loss + n, scale + n);
  } else {
#pragma unroll
    for (int k = 0; k < kRawPartials; ++k) part[(int64_t(k) * gridDim.x + n) * gridDim.y + blockIdx.y] = sums[k];
  }
}

__global__ void __launch_bounds__(kFinalizeWarps * 32)
raw_loss_finalize_kernel(const float* part, int64_t rows, int64_t chunks, int64_t d, float* loss, float* scale,
                         float clip, int normalize) {
  const int64_t row = int64_t(blockIdx.x) * kFinalizeWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps: the shuffles below stay converged
  float sums[kRawPartials];
  sum_partials(part, rows, chunks, row, sums);
  if (threadIdx.x % 32 == 0) raw_finish(sums, d, clip, normalize, loss + row, scale + row);
}

struct RawBwdBody {
  SkBuf fp, fq, xt, xg, gfp, gfq, gxt, gxg;
  Coefficients c;
  float alpha, factor;
  bool drop;  // a dropped sample (its inputs may hold NaN): zero gradient

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float d_ab[W], d_ax[W], out[W], unused = 0.0f;
    raw_differences<W, VEC>(fp, fq, xt, xg, c, g, d_ab, d_ax, unused);
    const float f = drop ? 0.0f : factor;
    if (gfp.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) out[k] = drop ? 0.0f : f * c.c_out * (d_ax[k] + (1.0f - 2.0f * alpha) * d_ab[k]);
      store<W, VEC>(gfp, g, out);
    }
    if (gfq.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) out[k] = drop ? 0.0f : f * c.c_out * (2.0f * alpha * d_ab[k] - d_ax[k]);
      store<W, VEC>(gfq, g, out);
    }
    if (gxt.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) out[k] = drop ? 0.0f : f * c.c_skip * d_ab[k];
      store<W, VEC>(gxt, g, out);
    }
    if (gxg.data != nullptr) {
#pragma unroll
      for (int k = 0; k < W; ++k) out[k] = drop ? 0.0f : -f * d_ab[k];
      store<W, VEC>(gxg, g, out);
    }
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
raw_loss_bwd_kernel(Geometry geo, SkRows grad_out, SkRows scale, SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg, SkRows sigma,
                    SkBuf gfp, SkBuf gfq, SkBuf gxt, SkBuf gxg, int kind, float sigma_data, float alpha) {
  const int64_t n = blockIdx.x;
  const float s = load_row(scale, n);
  RawBwdBody body{fp, fq, xt, xg, gfp, gfq, gxt, gxg, precond_coefficients(kind, load_row(sigma, n), sigma_data),
                  alpha, load_row(grad_out, n) * s, s == 0.0f};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace

int64_t sid_generator_loss_raw_workspace(int64_t n, int64_t d) { return partials_workspace(n, d, kRawPartials); }

cudaError_t launch_sid_generator_loss_raw(SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg, SkRows sigma, float* loss,
                                          float* scale, float* workspace, int64_t n, int64_t d, int32_t kind,
                                          float sigma_data, float alpha, float weight_clip, int32_t normalize,
                                          cudaStream_t stream) {
  const int64_t chunks = row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = launch_rows(raw_loss_kernel<true>, raw_loss_kernel<false>, aligned16(fp, fq, xt, xg), n, d, stream,
                                fp, fq, xt, xg, sigma, workspace, loss, scale, kind, sigma_data, alpha, weight_clip,
                                normalize);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(raw_loss_finalize_kernel, unsigned(ceil_div(n, kFinalizeWarps)), kFinalizeWarps * 32, stream)(
      workspace, n, chunks, d, loss, scale, weight_clip, normalize);
  return cudaGetLastError();
}

cudaError_t launch_sid_generator_loss_raw_bwd(SkRows grad_out, SkRows scale, SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg,
                                              SkRows sigma, SkBuf gfp, SkBuf gfq, SkBuf gxt, SkBuf gxg, int64_t n,
                                              int64_t d, int32_t kind, float sigma_data, float alpha,
                                              cudaStream_t stream) {
  return launch_rows(raw_loss_bwd_kernel<true>, raw_loss_bwd_kernel<false>,
                     aligned16(fp, fq, xt, xg, gfp, gfq, gxt, gxg), n, d, stream, grad_out, scale, fp, fq, xt, xg,
                     sigma, gfp, gfq, gxt, gxg, kind, sigma_data, alpha);
}

}  // namespace sk
