// Bindings of sidkernels::sid_generator_loss_raw_cuda and sid_generator_loss_raw_bwd_cuda (schemas, fakes and
// autograd: sidkernels/ops/sid_generator_loss_raw/__init__.py).
#include "binding.h"

namespace sk {
int64_t sid_generator_loss_raw_workspace(int64_t n, int64_t d);  // sid_generator_loss_raw.cu
cudaError_t launch_sid_generator_loss_raw(SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg, SkRows sigma, float* loss,
                                          float* scale, float* workspace, int64_t n, int64_t d, int32_t kind,
                                          float sigma_data, float alpha, float weight_clip, int32_t normalize,
                                          cudaStream_t stream);
cudaError_t launch_sid_generator_loss_raw_bwd(SkRows grad_out, SkRows scale, SkBuf fp, SkBuf fq, SkBuf xt, SkBuf xg,
                                              SkRows sigma, SkBuf gfp, SkBuf gfq, SkBuf gxt, SkBuf gxg, int64_t n,
                                              int64_t d, int32_t kind, float sigma_data, float alpha,
                                              cudaStream_t stream);
}

namespace {

using sk::Call;
using at::Tensor;

std::tuple<Tensor, Tensor> sid_generator_loss_raw_cuda(const Tensor& teacher_raw, const Tensor& fake_raw,
                                                       const Tensor& x_t, const Tensor& x_g, const Tensor& sigma,
                                                       int64_t kind, double sigma_data, double alpha,
                                                       double weight_clip, bool normalize) {
  const Call call("sid_generator_loss_raw_cuda", x_g, "x_g");
  const SkBuf xg = call.samples(x_g, "x_g");
  const SkBuf fp = call.samples(teacher_raw, "teacher_raw");
  const SkBuf fq = call.samples(fake_raw, "fake_raw");
  const SkBuf xt = call.samples(x_t, "x_t");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor loss = call.per_sample(), scale = call.per_sample();
  Tensor workspace = call.workspace(sk::sid_generator_loss_raw_workspace(call.n(), call.d()));
  call.launch([&](cudaStream_t stream) {
    return sk::launch_sid_generator_loss_raw(fp, fq, xt, xg, s, Call::floats(loss), Call::floats(scale),
                                             Call::floats(workspace), call.n(), call.d(), k, float(sigma_data),
                                             float(alpha), float(weight_clip), normalize, stream);
  });
  return {loss, scale};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> sid_generator_loss_raw_bwd_cuda(
    const Tensor& grad_out, const Tensor& scale, const Tensor& teacher_raw, const Tensor& fake_raw, const Tensor& x_t,
    const Tensor& x_g, const Tensor& sigma, int64_t kind, double sigma_data, double alpha,
    std::optional<at::ScalarType> teacher_dtype, std::optional<at::ScalarType> fake_dtype,
    std::optional<at::ScalarType> x_t_dtype, std::optional<at::ScalarType> x_g_dtype) {
  const Call call("sid_generator_loss_raw_bwd_cuda", x_g, "x_g");
  const SkBuf xg = call.samples(x_g, "x_g");
  const SkBuf fp = call.samples(teacher_raw, "teacher_raw");
  const SkBuf fq = call.samples(fake_raw, "fake_raw");
  const SkBuf xt = call.samples(x_t, "x_t");
  const SkRows go = call.rows(grad_out, "grad_out");
  const SkRows sc = call.rows(scale, "scale");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.precond(kind);
  Tensor gfp = call.maybe_like(x_g, teacher_dtype, "teacher_dtype");
  Tensor gfq = call.maybe_like(x_g, fake_dtype, "fake_dtype");
  Tensor gxt = call.maybe_like(x_g, x_t_dtype, "x_t_dtype");
  Tensor gxg = call.maybe_like(x_g, x_g_dtype, "x_g_dtype");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_sid_generator_loss_raw_bwd(go, sc, fp, fq, xt, xg, s, Call::out(gfp), Call::out(gfq),
                                                 Call::out(gxt), Call::out(gxg), call.n(), call.d(), k,
                                                 float(sigma_data), float(alpha), stream);
  });
  return {gfp, gfq, gxt, gxg};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) {
  m.impl("sid_generator_loss_raw_cuda", &sid_generator_loss_raw_cuda);
  m.impl("sid_generator_loss_raw_bwd_cuda", &sid_generator_loss_raw_bwd_cuda);
}
