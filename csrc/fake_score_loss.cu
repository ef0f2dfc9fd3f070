// Fused fake-score (EDM denoising) loss, the CUDA twin of sidkernels/ops/fake_score_loss/triton.py.
//
// D = denoised, y = target, lambda_n = (sigma_n^2 + sd^2) / (sigma_n sd)^2:
//     loss_n = lambda_n * sum_i (D - y)^2,   dl/dD = 2 lambda_n (D - y) = -dl/dy
// The pass writes r = D - y and partials of sum r^2 and the NaN count; the finish writes loss_n and
// scale_n = 2 lambda_n (0 for a sample with a NaN in D or y).  The backward is rowscale.cu.
#include "device.cuh"

namespace sk {
namespace {

constexpr int kFakePartials = 2;  // sum r^2, NaN count

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

}  // namespace

int64_t fake_score_loss_workspace(int64_t n, int64_t d) { return partials_workspace(n, d, kFakePartials); }

cudaError_t launch_fake_score_loss(SkBuf den, SkBuf y, SkRows sigma, SkBuf r, float* loss, float* scale,
                                   float* workspace, int64_t n, int64_t d, float sigma_data, cudaStream_t stream) {
  const int64_t chunks = row_launch(n, d).grid.y;
  if (chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = launch_rows(fake_score_loss_kernel<true>, fake_score_loss_kernel<false>, aligned16(den, y, r), n,
                                d, stream, den, y, sigma, r, workspace, loss, scale, sigma_data);
  if (err != cudaSuccess || chunks == 1) return err;
  SK_LAUNCH(fake_score_loss_finalize_kernel, unsigned(ceil_div(n, kFinalizeWarps)), kFinalizeWarps * 32, stream)(
      workspace, sigma, n, chunks, loss, scale, sigma_data);
  return cudaGetLastError();
}

}  // namespace sk
