// Binding of sidkernels::rowscale_cuda, the losses' backward (schema and fake: sidkernels/ops/rowscale/__init__.py).
#include "binding.h"

namespace sk {
cudaError_t launch_rowscale(SkRows grad_out, SkRows scale, SkBuf src, SkBuf out, int64_t n, int64_t d, float coef,
                            cudaStream_t stream);  // rowscale.cu
}

namespace {

using sk::Call;
using at::Tensor;

Tensor rowscale_cuda(const Tensor& grad_out, const Tensor& scale, const Tensor& src, double coef,
                     at::ScalarType dtype) {
  const Call call("rowscale_cuda", src, "src");
  const SkBuf in = call.samples(src, "src");
  const SkRows go = call.rows(grad_out, "grad_out");
  const SkRows sc = call.rows(scale, "scale");
  Tensor out = call.like(src, dtype, "dtype");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_rowscale(go, sc, in, Call::out(out), call.n(), call.d(), float(coef), stream);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) { m.impl("rowscale_cuda", &rowscale_cuda); }
