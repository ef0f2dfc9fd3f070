// Bindings of sidkernels::edm_precond_in_cuda and edm_precond_in_bwd_cuda (schemas, fakes and autograd:
// sidkernels/ops/edm_precond_in/__init__.py).
#include "binding.h"

namespace sk {
cudaError_t launch_edm_precond_in(SkBuf x, SkRows sigma, SkBuf y, float* c_noise, int64_t n, int64_t d, int32_t kind,
                                  float sigma_data, cudaStream_t stream);  // edm_precond_in.cu
cudaError_t launch_edm_precond_in_bwd(SkBuf grad_y, SkRows sigma, SkBuf addend, SkBuf grad_x, int64_t n, int64_t d,
                                      int32_t kind, float sigma_data, cudaStream_t stream);  // edm_precond_in.cu
}

namespace {

using sk::Call;
using at::Tensor;

std::tuple<Tensor, Tensor> edm_precond_in_cuda(const Tensor& x, const Tensor& sigma, int64_t kind, double sigma_data,
                                               at::ScalarType dtype) {
  const Call call("edm_precond_in_cuda", x, "x");
  const SkBuf in = call.samples(x, "x");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor y = call.like(x, dtype, "dtype");
  Tensor c_noise = call.per_sample();
  call.launch([&](cudaStream_t stream) {
    return sk::launch_edm_precond_in(in, s, Call::out(y), Call::floats(c_noise), call.n(), call.d(), k,
                                     float(sigma_data), stream);
  });
  return {y, c_noise};
}

Tensor edm_precond_in_bwd_cuda(const Tensor& grad_y, const Tensor& sigma, const Tensor& addend, int64_t kind,
                               double sigma_data, at::ScalarType x_dtype) {
  const Call call("edm_precond_in_bwd_cuda", grad_y, "grad_y");
  const SkBuf gy = call.samples(grad_y, "grad_y");
  const SkBuf add = call.samples(addend, "addend", /*optional=*/true);
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor grad_x = call.like(grad_y, x_dtype, "x_dtype");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_edm_precond_in_bwd(gy, s, add, Call::out(grad_x), call.n(), call.d(), k, float(sigma_data),
                                         stream);
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) {
  m.impl("edm_precond_in_cuda", &edm_precond_in_cuda);
  m.impl("edm_precond_in_bwd_cuda", &edm_precond_in_bwd_cuda);
}
