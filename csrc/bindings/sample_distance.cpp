// Bindings of sidkernels::sample_distance_cuda and sample_distance_bwd_cuda (schemas, fakes and autograd:
// sidkernels/ops/sample_distance/__init__.py).
#include "binding.h"

namespace sk {
int64_t sample_distance_workspace(int64_t n, int64_t d);  // sample_distance.cu
cudaError_t launch_sample_distance(SkBuf a, SkBuf b, float* dist, float* scale, float* workspace, int64_t n,
                                   int64_t d, int32_t kind, float c, cudaStream_t stream);
cudaError_t launch_sample_distance_bwd(SkRows grad_out, SkRows scale, SkBuf a, SkBuf b, SkBuf ga, SkBuf gb, int64_t n,
                                       int64_t d, int32_t kind, cudaStream_t stream);
}

namespace {

using sk::Call;
using at::Tensor;

constexpr const char* kKinds = "0 (l2), 1 (l1), 2 (pseudo_huber)";

std::tuple<Tensor, Tensor> sample_distance_cuda(const Tensor& a, const Tensor& b, int64_t kind, double c) {
  const Call call("sample_distance_cuda", a, "a");
  const SkBuf in_a = call.samples(a, "a");
  const SkBuf in_b = call.samples(b, "b");
  const int32_t k = call.kind(kind, SK_DISTANCE_PSEUDO_HUBER, kKinds);
  Tensor dist = call.per_sample(), scale = call.per_sample();
  Tensor workspace = call.workspace(sk::sample_distance_workspace(call.n(), call.d()));
  call.launch([&](cudaStream_t stream) {
    return sk::launch_sample_distance(in_a, in_b, Call::floats(dist), Call::floats(scale), Call::floats(workspace),
                                      call.n(), call.d(), k, float(c), stream);
  });
  return {dist, scale};
}

std::tuple<Tensor, Tensor> sample_distance_bwd_cuda(const Tensor& grad_out, const Tensor& scale, const Tensor& a,
                                                    const Tensor& b, int64_t kind,
                                                    std::optional<at::ScalarType> a_dtype,
                                                    std::optional<at::ScalarType> b_dtype) {
  const Call call("sample_distance_bwd_cuda", a, "a");
  const SkBuf in_a = call.samples(a, "a");
  const SkBuf in_b = call.samples(b, "b");
  const SkRows go = call.rows(grad_out, "grad_out");
  const SkRows sc = call.rows(scale, "scale");
  const int32_t k = call.kind(kind, SK_DISTANCE_PSEUDO_HUBER, kKinds);
  Tensor grad_a = call.maybe_like(a, a_dtype, "a_dtype");
  Tensor grad_b = call.maybe_like(a, b_dtype, "b_dtype");
  call.launch([&](cudaStream_t stream) {
    return sk::launch_sample_distance_bwd(go, sc, in_a, in_b, Call::out(grad_a), Call::out(grad_b), call.n(),
                                          call.d(), k, stream);
  });
  return {grad_a, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) {
  m.impl("sample_distance_cuda", &sample_distance_cuda);
  m.impl("sample_distance_bwd_cuda", &sample_distance_bwd_cuda);
}
