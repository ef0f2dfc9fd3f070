// Bindings of sidkernels::edm_precond_out_cuda and edm_precond_out_bwd_cuda (schemas, fakes and autograd:
// sidkernels/ops/edm_precond_out/__init__.py).
#include "binding.h"

namespace sk {
cudaError_t launch_edm_precond_out(SkBuf x, SkBuf f, SkRows sigma, SkBuf out, int64_t n, int64_t d, int32_t kind,
                                   float sigma_data, cudaStream_t stream);  // edm_precond_out.cu
cudaError_t launch_edm_precond_out_bwd(SkBuf grad, SkRows sigma, SkBuf grad_x, SkBuf grad_f, int64_t n, int64_t d,
                                       int32_t kind, float sigma_data, cudaStream_t stream);  // edm_precond_out.cu
}

namespace {

using sk::Call;
using at::Tensor;

Tensor edm_precond_out_cuda(const Tensor& x, const Tensor& F, const Tensor& sigma, int64_t kind, double sigma_data) {
  const Call call("edm_precond_out_cuda", x, "x");
  const SkBuf in_x = call.samples(x, "x");
  const SkBuf in_f = call.samples(F, "F");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor out = call.like(x, at::kFloat, "out");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_edm_precond_out(in_x, in_f, s, Call::out(out), call.n(), call.d(), k, float(sigma_data), stream);
  });
  return out;
}

std::tuple<Tensor, Tensor> edm_precond_out_bwd_cuda(const Tensor& grad, const Tensor& sigma, int64_t kind,
                                                    double sigma_data, std::optional<at::ScalarType> x_dtype,
                                                    std::optional<at::ScalarType> f_dtype) {
  const Call call("edm_precond_out_bwd_cuda", grad, "grad");
  const SkBuf g = call.samples(grad, "grad");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor grad_x = call.maybe_like(grad, x_dtype, "x_dtype");
  Tensor grad_f = call.maybe_like(grad, f_dtype, "f_dtype");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_edm_precond_out_bwd(g, s, Call::out(grad_x), Call::out(grad_f), call.n(), call.d(), k,
                                          float(sigma_data), stream);
  });
  return {grad_x, grad_f};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) {
  m.impl("edm_precond_out_cuda", &edm_precond_out_cuda);
  m.impl("edm_precond_out_bwd_cuda", &edm_precond_out_bwd_cuda);
}
