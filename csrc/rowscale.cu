// The losses' backward, the CUDA twin of sidkernels/ops/rowscale/triton.py:
//     out[n, i] = coef * grad_out[n] * scale[n] * src[n, i], and 0 where scale[n] == 0 (a dropped sample, whose
//     src may hold NaN).  grad_out may have stride 0.
#include "device.cuh"

namespace sk {
namespace {

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

cudaError_t launch_rowscale(SkRows grad_out, SkRows scale, SkBuf src, SkBuf out, int64_t n, int64_t d, float coef,
                            cudaStream_t stream) {
  return launch_rows(rowscale_kernel<true>, rowscale_kernel<false>, aligned16(src, out), n, d, stream, grad_out,
                     scale, src, out, coef);
}

}  // namespace sk
