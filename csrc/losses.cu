// Fused SiD losses and their shared backward, the CUDA twins of sidkernels/kernels/{sid_loss,
// fake_score_loss,rowscale}.py.
//
// SiD generator loss (SID.md 1, 1a), a = teacher output, b = fake-score output, x = generator sample:
//     w_n    = max(mean_i |x - a|, clip)                  (stop-gradient; 1 without normalisation)
//     loss_n = sum_i (a - b) * ((a - x) - alpha (a - b)) / w_n
//     dl/da  = [ (a - x) + (1 - 2 alpha)(a - b) ] / w_n
//     dl/db  = [ -(a - x) + 2 alpha (a - b) ] / w_n
//     dl/dx  = -(a - b) / w_n                              (direct term)
//   One pass reads a, b, x once, writes the *bracketed* gradients (no 1/w_n: w_n needs the whole sample)
//   and per (sample, chunk) fp32 partials of sum|x - a|, the loss numerator and the NaN count.  A second
//   launch sums each sample's partials in a fixed order (no float atomics: bitwise reproducible) and
//   writes loss_n and scale_n = 1/w_n, both 0 for a sample with a NaN in a, b or x (the official drop).
//   When a sample fits one block the first launch finishes it and the second is skipped.
//
// Fake-score loss (SID.md 2), D = denoised, y = target, lambda_n = (sigma_n^2 + sd^2) / (sigma_n sd)^2:
//     loss_n = lambda_n * sum_i (D - y)^2,   dl/dD = 2 lambda_n (D - y) = -dl/dy
//   The pass writes r = D - y and partials of sum r^2 and the NaN count; the finish writes loss_n and
//   scale_n = 2 lambda_n (0 for a sample with a NaN in D or y).
//
// Backward of both (rowscale):  out[n, i] = coef * grad_out[n] * scale[n] * src[n, i], and 0 where
//   scale[n] == 0 (a dropped sample, whose src may hold NaN).  grad_out may have stride 0.
#include "common.cuh"

namespace sk {
namespace {

constexpr int kSidPartials = 3;   // sum |x - a|, loss numerator, NaN count
constexpr int kFakePartials = 2;  // sum r^2, NaN count

int64_t loss_workspace(int64_t n, int64_t d, int kinds) {
  const RowLaunch l = row_launch(n, d);
  return l.grid.y > 1 ? int64_t(kinds) * n * l.grid.y : 0;
}

// ------------------------------------------------------------------ SiD generator loss (math at the top)
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

// ------------------------------------------------------------------ fake-score loss: lambda_n sum (D - y)^2
__device__ __forceinline__ void fake_finish(const float (&sums)[kFakePartials], float s, float sd, float* loss,
                                            float* scale) {
  const float lam = (s * s + sd * sd) / (s * sd * s * sd);
  const bool keep = sums[1] == 0.0f;
  *loss = keep ? lam * sums[0] : 0.0f;
  *scale = keep ? 2.0f * lam : 0.0f;
}

struct FakeBody {
  SkBuf den, y, r;
  float sq_sum = 0.0f, nans = 0.0f;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float vd[W], vy[W];
    load<W, VEC>(den, g, vd);
    load<W, VEC>(y, g, vy);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      nans += (isnan(vd[k]) || isnan(vy[k])) ? 1.0f : 0.0f;
      vd[k] -= vy[k];
      sq_sum += vd[k] * vd[k];
    }
    if (r.data != nullptr) store<W, VEC>(r, g, vd);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
fake_score_loss_kernel(Geometry geo, SkBuf den, SkBuf y, SkRows sigma, SkBuf r, float* part, float* loss,
                       float* scale, float sigma_data) {
  const int64_t n = blockIdx.x;
  FakeBody body{den, y, r};
  visit_sample<VEC>(n, geo, body);
  float sums[kFakePartials] = {body.sq_sum, body.nans};
  block_sum(sums);
  if (threadIdx.x != 0) return;
  if (gridDim.y == 1) {
    fake_finish(sums, load_row(sigma, n), sigma_data, loss + n, scale + n);
  } else {
#pragma unroll
    for (int k = 0; k < kFakePartials; ++k) part[(int64_t(k) * gridDim.x + n) * gridDim.y + blockIdx.y] = sums[k];
  }
}

__global__ void __launch_bounds__(kFinalizeWarps * 32)
fake_score_loss_finalize_kernel(const float* part, SkRows sigma, int64_t rows, int64_t chunks, float* loss,
                                float* scale, float sigma_data) {
  const int64_t row = int64_t(blockIdx.x) * kFinalizeWarps + threadIdx.x / 32;
  if (row >= rows) return;
  float sums[kFakePartials];
  sum_partials(part, rows, chunks, row, sums);
  if (threadIdx.x % 32 == 0) fake_finish(sums, load_row(sigma, row), sigma_data, loss + row, scale + row);
}

// ------------------------------------------------------------------ rowscale: coef grad_out[n] scale[n] src
struct RowscaleBody {
  SkBuf src, out;
  float factor;
  bool drop;

  template <int W, bool VEC>
  __device__ __forceinline__ void run(int64_t g) {
    float v[W];
    if (drop) {
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] = 0.0f;
    } else {
      load<W, VEC>(src, g, v);
#pragma unroll
      for (int k = 0; k < W; ++k) v[k] *= factor;
    }
    store<W, VEC>(out, g, v);
  }
};

template <bool VEC>
__global__ void __launch_bounds__(kMaxThreads)
rowscale_kernel(Geometry geo, SkRows grad_out, SkRows scale, SkBuf src, SkBuf out, float coef) {
  const int64_t n = blockIdx.x;
  const float s = load_row(scale, n);
  RowscaleBody body{src, out, load_row(grad_out, n) * s * coef, s == 0.0f};
  visit_sample<VEC>(n, geo, body);
}

}  // namespace
}  // namespace sk

extern "C" int64_t sk_sid_loss_workspace(int64_t n, int64_t d) { return sk::loss_workspace(n, d, sk::kSidPartials); }

extern "C" int64_t sk_fake_score_loss_workspace(int64_t n, int64_t d) {
  return sk::loss_workspace(n, d, sk::kFakePartials);
}

extern "C" cudaError_t sk_sid_loss(SkBuf a, SkBuf b, SkBuf x, SkBuf ga, SkBuf gb, SkBuf gx, float* loss, float* scale,
                                   float* workspace, int64_t n, int64_t d, float alpha, float weight_clip,
                                   int32_t normalize, cudaStream_t stream) {
  const int64_t chunks = sk::row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = sk::launch_rows(sk::sid_loss_kernel<true>, sk::sid_loss_kernel<false>,
                                    sk::aligned16(a, b, x, ga, gb, gx), n, d, stream, a, b, x, ga, gb, gx, workspace,
                                    loss, scale, alpha, weight_clip, normalize);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(sk::sid_loss_finalize_kernel, unsigned(sk::ceil_div(n, sk::kFinalizeWarps)), sk::kFinalizeWarps * 32,
            stream)(workspace, n, chunks, d, loss, scale, weight_clip, normalize);
  return cudaGetLastError();
}

extern "C" cudaError_t sk_fake_score_loss(SkBuf den, SkBuf y, SkRows sigma, SkBuf r, float* loss, float* scale,
                                          float* workspace, int64_t n, int64_t d, float sigma_data,
                                          cudaStream_t stream) {
  const int64_t chunks = sk::row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = sk::launch_rows(sk::fake_score_loss_kernel<true>, sk::fake_score_loss_kernel<false>,
                                    sk::aligned16(den, y, r), n, d, stream, den, y, sigma, r, workspace, loss, scale,
                                    sigma_data);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(sk::fake_score_loss_finalize_kernel, unsigned(sk::ceil_div(n, sk::kFinalizeWarps)),
            sk::kFinalizeWarps * 32, stream)(workspace, sigma, n, chunks, loss, scale, sigma_data);
  return cudaGetLastError();
}

extern "C" cudaError_t sk_rowscale(SkRows grad_out, SkRows scale, SkBuf src, SkBuf out, int64_t n, int64_t d,
                                   float coef, cudaStream_t stream) {
  return sk::launch_rows(sk::rowscale_kernel<true>, sk::rowscale_kernel<false>, sk::aligned16(src, out), n, d, stream,
                         grad_out, scale, src, out, coef);
}
