// Binding of sidkernels::sid_generator_loss_cuda (schema, fake and autograd:
// sidkernels/ops/sid_generator_loss/__init__.py; its backward is rowscale_cuda).
#include "binding.h"

namespace sk {
int64_t sid_generator_loss_workspace(int64_t n, int64_t d);  // sid_generator_loss.cu
cudaError_t launch_sid_generator_loss(SkBuf a, SkBuf b, SkBuf x, SkBuf ga, SkBuf gb, SkBuf gx, float* loss,
                                      float* scale, float* workspace, int64_t n, int64_t d, float alpha,
                                      float weight_clip, int32_t normalize, cudaStream_t stream);
}

namespace {

using sk::Call;
using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sid_generator_loss_cuda(
    const Tensor& teacher_out, const Tensor& fake_out, const Tensor& x_g, double alpha, double weight_clip,
    bool normalize, bool grad_a, bool grad_b, bool grad_x) {
  const Call call("sid_generator_loss_cuda", teacher_out, "teacher_out");
  const SkBuf a = call.samples(teacher_out, "teacher_out");
  const SkBuf b = call.samples(fake_out, "fake_out");
  const SkBuf x = call.samples(x_g, "x_g");
  Tensor loss = call.per_sample(), scale = call.per_sample();
  auto grad = [&](const Tensor& t, bool want, const char* name) {
    return want ? call.like(t, t.scalar_type(), name) : Call::nothing(t, t.scalar_type());
  };
  Tensor ga = grad(teacher_out, grad_a, "teacher_out"), gb = grad(fake_out, grad_b, "fake_out");
  Tensor gx = grad(x_g, grad_x, "x_g");
  Tensor workspace = call.workspace(sk::sid_generator_loss_workspace(call.n(), call.d()));
  call.launch([&](cudaStream_t stream) {
    return sk::launch_sid_generator_loss(a, b, x, Call::out(ga), Call::out(gb), Call::out(gx), Call::floats(loss),
                                         Call::floats(scale), Call::floats(workspace), call.n(), call.d(),
                                         float(alpha), float(weight_clip), normalize, stream);
  });
  return {loss, scale, ga, gb, gx};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) { m.impl("sid_generator_loss_cuda", &sid_generator_loss_cuda); }
