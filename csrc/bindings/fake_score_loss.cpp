// Binding of sidkernels::fake_score_loss_cuda (schema, fake and autograd: sidkernels/ops/fake_score_loss/__init__.py;
// its backward is rowscale_cuda).
#include "binding.h"

namespace sk {
int64_t fake_score_loss_workspace(int64_t n, int64_t d);  // fake_score_loss.cu
cudaError_t launch_fake_score_loss(SkBuf den, SkBuf y, SkRows sigma, SkBuf r, float* loss, float* scale,
                                   float* workspace, int64_t n, int64_t d, float sigma_data, cudaStream_t stream);
}

namespace {

using sk::Call;
using at::Tensor;

std::tuple<Tensor, Tensor, Tensor> fake_score_loss_cuda(const Tensor& denoised, const Tensor& target,
                                                        const Tensor& sigma, double sigma_data, bool want_grad) {
  const Call call("fake_score_loss_cuda", denoised, "denoised");
  const SkBuf den = call.samples(denoised, "denoised");
  const SkBuf y = call.samples(target, "target");
  const SkRows s = call.rows(sigma, "sigma");
  Tensor loss = call.per_sample(), scale = call.per_sample();
  Tensor r = want_grad ? call.like(denoised, c10::promoteTypes(denoised.scalar_type(), target.scalar_type()), "r")
                       : Call::nothing(denoised, denoised.scalar_type());
  Tensor workspace = call.workspace(sk::fake_score_loss_workspace(call.n(), call.d()));
  call.launch([&](cudaStream_t stream) {
    return sk::launch_fake_score_loss(den, y, s, Call::out(r), Call::floats(loss), Call::floats(scale),
                                      Call::floats(workspace), call.n(), call.d(), float(sigma_data), stream);
  });
  return {loss, scale, r};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) { m.impl("fake_score_loss_cuda", &fake_score_loss_cuda); }
