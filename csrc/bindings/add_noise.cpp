// Binding of sidkernels::add_noise_cuda (schema, fake and autograd: sidkernels/ops/add_noise/__init__.py).
#include "binding.h"

namespace sk {
cudaError_t launch_add_noise(SkBuf x, SkRows sigma, const int64_t* seed, SkBuf xt, SkBuf net, SkBuf eps, int64_t n,
                             int64_t d, int32_t kind, float sigma_data, cudaStream_t stream);  // add_noise.cu
}

namespace {

using sk::Call;
using at::Tensor;

std::tuple<Tensor, Tensor, Tensor> add_noise_cuda(const Tensor& x, const Tensor& sigma, const Tensor& seed,
                                                  int64_t kind, double sigma_data,
                                                  std::optional<at::ScalarType> net_dtype, bool want_eps) {
  const Call call("add_noise_cuda", x, "x");
  const SkBuf in = call.samples(x, "x");
  const SkRows s = call.rows(sigma, "sigma");
  const int64_t* seed_ptr = call.seed(seed);
  const int32_t k = call.precond(kind);
  Tensor xt = call.like(x, x.scalar_type(), "x");
  Tensor net = call.maybe_like(x, net_dtype, "net_dtype");
  Tensor eps = want_eps ? call.like(x, at::kFloat, "eps") : Call::nothing(x, at::kFloat);
  call.launch([&](cudaStream_t stream) {
    return sk::launch_add_noise(in, s, seed_ptr, Call::out(xt), Call::out(net), Call::out(eps), call.n(), call.d(), k,
                                float(sigma_data), stream);
  });
  return {xt, net, eps};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) { m.impl("add_noise_cuda", &add_noise_cuda); }
