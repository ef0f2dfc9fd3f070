// Per-sample distances of SIGN, the CUDA twins of sidkernels/ops/sample_distance/triton.py.
//
// With r = a - b over a sample's D elements and kind 0 l2, 1 l1, 2 pseudo-Huber (constant c > 0):
//     S_n   = sum_i r^2 (l2, pseudo-Huber)  or  sum_i |r| (l1)
//     d_n   = S_n / D (l2, l1);   sqrt(S_n + c^2) - c = S_n / (sqrt(S_n + c^2) + c) (pseudo-Huber, no cancellation)
//     dd/da = scale_n phi(r) = -dd/db,  scale_n = 2/D (l2), 1/D (l1), 1/sqrt(S_n + c^2) (pseudo-Huber),
//             phi(r) = r, or sign(r) for l1 (sign(NaN) = 0, as torch.sign)
//   The forward reads a and b once and writes per (sample, chunk) fp32 partials of S; a second launch sums
//   each sample's partials in a fixed order (bitwise reproducible) and writes d_n and scale_n.  When a sample
//   fits one block the first launch finishes it.  The backward re-reads a and b (no saved residual) and
//   writes both gradients in one pass.  A NaN is not dropped: it propagates as in plain PyTorch.
#include "device.cuh"

namespace sk {
namespace {

__device__ __forceinline__ void distance_finish(float s, int64_t d, int kind, float c, float* dist, float* scale) {
  if (kind == SK_DISTANCE_PSEUDO_HUBER) {
    const float q = sqrtf(s + c * c);
    *dist = s / (q + c);
    *scale = 1.0f / q;
  } else {
    *dist = s / float(d);
    *scale = (kind == SK_DISTANCE_L2 ? 2.0f : 1.0f) / float(d);
  }
}

// r = a - b for the W elements at global index g.
template <int W, bool VEC>
__device__ __forceinline__ void load_residual(const SkBuf& a, const SkBuf& b, int64_t g, float (&r)[W]) {
  float vb[W];
  load<W, VEC>(a, g, r);
  load<W, VEC>(b, g, vb);
#pragma unroll
  for (int k = 0; k < W; ++k) r[k] -= vb[k];
}

struct DistanceBody {
  SkBuf a, b;
  int kind;
  float sum = 0.0f;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float r[W];
    load_residual<W, VEC>(a, b, g, r);
#pragma unroll
    for (int k = 0; k < W; ++k) sum += kind == SK_DISTANCE_L1 ? fabsf(r[k]) : r[k] * r[k];
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
distance_kernel(Geometry geo, SkBuf a, SkBuf b, float* part, float* dist, float* scale, int kind, float c) {
  const int64_t n = blockIdx.x;
  DistanceBody body{a, b, kind};
  visit_sample<VEC>(n, geo, body);
  float sums[1] = {body.sum};
  block_sum(sums);
  if (threadIdx.x != 0) return;
  if (gridDim.y == 1) {
    distance_finish(sums[0], geo.d, kind, c, dist + n, scale + n);
  } else {
    part[n * gridDim.y + blockIdx.y] = sums[0];
  }
}

__global__ void __launch_bounds__(kFinalizeWarps * 32)
distance_finalize_kernel(const float* part, int64_t rows, int64_t chunks, int64_t d, float* dist, float* scale,
                         int kind, float c) {
  const int64_t row = int64_t(blockIdx.x) * kFinalizeWarps + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps: the shuffles below stay converged
  float sums[1];
  sum_partials(part, rows, chunks, row, sums);
  if (threadIdx.x % 32 == 0) distance_finish(sums[0], d, kind, c, dist + row, scale + row);
}

struct DistanceBwdBody {
  SkBuf a, b, ga, gb;
  float factor;
  bool sign;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float va[W], vb[W];
    load_residual<W, VEC>(a, b, g, va);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float r = va[k];
      va[k] = factor * (sign ? (r > 0.0f ? 1.0f : (r < 0.0f ? -1.0f : 0.0f)) : r);
      vb[k] = -va[k];
    }
    if (ga.data != nullptr) store<W, VEC>(ga, g, va);
    if (gb.data != nullptr) store<W, VEC>(gb, g, vb);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
distance_bwd_kernel(Geometry geo, SkRows grad_out, SkRows scale, SkBuf a, SkBuf b, SkBuf ga, SkBuf gb, int kind) {
  const int64_t n = blockIdx.x;
  DistanceBwdBody body{a, b, ga, gb, load_row(grad_out, n) * load_row(scale, n), kind == SK_DISTANCE_L1};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace

int64_t sample_distance_workspace(int64_t n, int64_t d) { return partials_workspace(n, d, 1); }

cudaError_t launch_sample_distance(SkBuf a, SkBuf b, float* dist, float* scale, float* workspace, int64_t n,
                                   int64_t d, int32_t kind, float c, cudaStream_t stream) {
  const int64_t chunks = row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = launch_rows(distance_kernel<true>, distance_kernel<false>, aligned16(a, b), n, d, stream, a, b,
                                workspace, dist, scale, kind, c);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(distance_finalize_kernel, unsigned(ceil_div(n, kFinalizeWarps)), kFinalizeWarps * 32, stream)(
      workspace, n, chunks, d, dist, scale, kind, c);
  return cudaGetLastError();
}

cudaError_t launch_sample_distance_bwd(SkRows grad_out, SkRows scale, SkBuf a, SkBuf b, SkBuf ga, SkBuf gb, int64_t n,
                                       int64_t d, int32_t kind, cudaStream_t stream) {
  return launch_rows(distance_bwd_kernel<true>, distance_bwd_kernel<false>, aligned16(a, b, ga, gb), n, d, stream,
                     grad_out, scale, a, b, ga, gb, kind);
}

}  // namespace sk
