// Fused SiD generator loss, the CUDA twin of sidkernels/ops/sid_generator_loss/triton.py.
//
// a = teacher output, b = fake-score output, x = generator sample:
//     w_n    = max(mean_i |x - a|, clip)                  (stop-gradient; 1 without normalisation)
//     loss_n = sum_i (a - b) * ((a - x) - alpha (a - b)) / w_n
//     dl/da  = [ (a - x) + (1 - 2 alpha)(a - b) ] / w_n
//     dl/db  = [ -(a - x) + 2 alpha (a - b) ] / w_n
//     dl/dx  = -(a - b) / w_n                              (direct term)
// One pass reads a, b, x once, writes the *bracketed* gradients (no 1/w_n: w_n needs the whole sample) and per
// (sample, chunk) fp32 partials of sum|x - a|, the loss numerator and the NaN count.  A second launch sums each
// sample's partials in a fixed order (no float atomics: bitwise reproducible) and writes loss_n and
// scale_n = 1/w_n, both 0 for a sample with a NaN in a, b or x (the official drop).  When a sample fits one
// block the first launch finishes it and the second is skipped.  The backward is rowscale.cu.
#include "device.cuh"

namespace sk {
namespace {

constexpr int kSidPartials = 3;   // sum |x - a|, loss numerator, NaN count

__device__ __forceinline__ void sid_finish(const float (&sums)[kSidPartials], int64_t d, float clip, int normalize,
                                           float* loss, float* scale) {
  const float w = normalize ? fmaxf(sums[0] / float(d), clip) : 1.0f;
  const bool keep = sums[2] == 0.0f;
  *loss = keep ? sums[1] / w : 0.0f;
  *scale = keep ? 1.0f / w : 0.0f;
}

struct SidBody {
  SkBuf a, b, x, ga, gb, gx;
  float alpha;
  float abs_sum = 0.0f, num = 0.0f, nans = 0.0f;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float va[W], vb[W], vx[W];
    load<W, VEC>(a, g, va);
    load<W, VEC>(b, g, vb);
    load<W, VEC>(x, g, vx);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float d_ax = va[k] - vx[k], d_ab = va[k] - vb[k];
      abs_sum += fabsf(d_ax);
      num += d_ab * (d_ax - alpha * d_ab);
      nans += (isnan(va[k]) || isnan(vb[k]) || isnan(vx[k])) ? 1.0f : 0.0f;
      va[k] = d_ax + (1.0f - 2.0f * alpha) * d_ab;  // dl/da bracket
      vb[k] = 2.0f * alpha * d_ab - d_ax;           // dl/db bracket
      vx[k] = -d_ab;                                 // dl/dx bracket
    }
    if (ga.data != nullptr) store<W, VEC>(ga, g, va);
    if (gb.data != nullptr) store<W, VEC>(gb, g, vb);
    if (gx.data != nullptr) store<W, VEC>(gx, g, vx);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
sid_loss_kernel(Geometry geo, SkBuf a, SkBuf b, SkBuf x, SkBuf ga, SkBuf gb, SkBuf gx, float* part, float* loss,
                float* scale, float alpha, float clip, int normalize) {
  const int64_t n = blockIdx.x;
  SidBody body{a, b, x, ga, gb, gx, alpha};
  visit_sample<VEC>(n, geo, body);
  float sums[kSidPartials] = {body.abs_sum, body.num, body.nans};
  block_sum(sums);
  if (threadIdx.x != 0) return;
  if (gridDim.y == 1) {
    sid_finish(sums, geo.d, clip, normalize, loss + n, scale + n);
  } else {
#pragma unroll
    for (int k = 0; k < kSidPartials; ++k) part[(int64_t(k) * gridDim.x + n) * gridDim.y + blockIdx.y] = sums[k];
  }
}

__global__ void __launch_bounds__(kFinalizeWarps * 32)
sid_loss_finalize_kernel(const float* part, int64_t rows, int64_t chunks, int64_t d, float* loss, float* scale,
                         float clip, int normalize) {
  const int64_t row = int64_t(blockIdx.x) * kFinalizeWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps: the shuffles below stay converged
  float sums[kSidPartials];
  sum_partials(part, rows, chunks, row, sums);
  if (threadIdx.x % 32 == 0) sid_finish(sums, d, clip, normalize, loss + row, scale + row);
}

}  // namespace

int64_t sid_generator_loss_workspace(int64_t n, int64_t d) { return partials_workspace(n, d, kSidPartials); }

cudaError_t launch_sid_generator_loss(SkBuf a, SkBuf b, SkBuf x, SkBuf ga, SkBuf gb, SkBuf gx, float* loss,
                                      float* scale, float* workspace, int64_t n, int64_t d, float alpha,
                                      float weight_clip, int32_t normalize, cudaStream_t stream) {
  const int64_t chunks = row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = launch_rows(sid_loss_kernel<true>, sid_loss_kernel<false>, aligned16(a, b, x, ga, gb, gx), n, d,
                                stream, a, b, x, ga, gb, gx, workspace, loss, scale, alpha, weight_clip, normalize);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(sid_loss_finalize_kernel, unsigned(ceil_div(n, kFinalizeWarps)), kFinalizeWarps * 32, stream)(
      workspace, n, chunks, d, loss, scale, weight_clip, normalize);
  return cudaGetLastError();
}

}  // namespace sk
