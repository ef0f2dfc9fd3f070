// Host-only binding of the CUDA kernels as the sidkernels::*_cuda operators.
//
// Defines every op with the schema of its Triton twin (sidkernels/ops/*.py, name suffix _cuda instead of
// _triton) and registers the CUDA kernels under the CUDA dispatch key.  The fakes and the autograd of the
// ops are registered from Python (sidkernels.cuda_ext) and shared with the Triton variants.
//
// Only CPU-side torch API is used (no c10/cuda or ATen/cuda header, no pybind), so this file builds and
// links against a CPU build of torch, and the kernels are reached through the plain C API of launchers.h.
//
// CUDA stream: the kernels run on torch's current stream of the inputs' device.  It is read through
// aoti_torch_get_current_cuda_stream, the C function of torch's stable AOTInductor shim that returns the
// cudaStream_t of at::cuda::getCurrentCUDAStream(device).  It lives in libtorch_cuda, which a CPU build
// lacks, so it is declared weak: the library links and loads without it, and an op called on a torch
// without it fails with a clear error instead of running on the wrong stream.  (c10::Stream::id() is not
// a cudaStream_t: torch encodes pool streams as indices.)
//
// Host emulation build (-DSK_HOST_EMULATION, csrc/host_emulation; CPU CI only): the same binding over the
// kernels run on the CPU, registered for CPU tensors under the CPU dispatch key, with no stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "launchers.h"

extern "C" __attribute__((weak)) int32_t aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream);

#ifdef SK_HOST_EMULATION
#define SK_DISPATCH_KEY CPU
#else
#define SK_DISPATCH_KEY CUDA
#endif

namespace {

using at::Tensor;

#ifdef SK_HOST_EMULATION
constexpr bool kHostEmulation = true;
#else
constexpr bool kHostEmulation = false;
#endif

cudaStream_t current_stream(const char* op, const at::Device& device) {
  if (kHostEmulation) return nullptr;
  TORCH_CHECK(aoti_torch_get_current_cuda_stream != nullptr, "sidkernels::", op,
              ": this torch has no CUDA support (aoti_torch_get_current_cuda_stream is missing); "
              "the CUDA kernels need a CUDA build of torch");
  void* stream = nullptr;
  TORCH_CHECK(aoti_torch_get_current_cuda_stream(device.index(), &stream) == 0, "sidkernels::", op,
              ": could not get the current CUDA stream of ", device);
  return static_cast<cudaStream_t>(stream);
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "sidkernels::", op, ": kernel launch failed: ", cudaGetErrorString(err));
}

int32_t dtype_code(const char* op, const char* arg, at::ScalarType t) {
  switch (t) {
    case at::kFloat: return SK_FLOAT32;
    case at::kHalf: return SK_FLOAT16;
    case at::kBFloat16: return SK_BFLOAT16;
    default:
      TORCH_CHECK(false, "sidkernels::", op, ": ", arg, " is ", t,
                  "; the CUDA kernels take Float, Half or BFloat16 (use backend='triton' or 'torch' for ", t, ")");
  }
}

bool sample_dense(const Tensor& t) {
  return t.is_contiguous() || (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
         (t.dim() == 5 && t.is_contiguous(at::MemoryFormat::ChannelsLast3d));
}

// Validates the arguments of one op call against its first sample-major input and converts them to the
// launchers' C types.
class Call {
 public:
  Call(const char* op, const Tensor& first, const char* name) : op_(op), first_(first), device_(first.device()) {
    TORCH_CHECK(kHostEmulation ? first.is_cpu() : first.is_cuda(), "sidkernels::", op, ": ", name, " is on ",
                first.device(), kHostEmulation ? "; the host emulation runs on CPU tensors"
                                               : "; the CUDA kernels need CUDA tensors");
    TORCH_CHECK(first.dim() >= 1, "sidkernels::", op, ": ", name, " must be a batch [N, ...], got a 0-dim tensor");
    TORCH_CHECK(sample_dense(first), "sidkernels::", op, ": ", name,
                " must be contiguous or channels_last, got strides ", first.strides(), " (call sample_major first)");
    dtype_code(op, name, first.scalar_type());
    n_ = first.size(0);
    d_ = n_ > 0 ? first.numel() / n_ : 0;
    TORCH_CHECK(n_ == 0 || d_ > 0, "sidkernels::", op, ": ", name, " has no elements per sample (shape ",
                first.sizes(), ")");
  }

  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  bool empty() const { return n_ == 0; }

  // A sample-major input with the first input's shape and layout (absent when `optional` and empty).
  SkBuf samples(const Tensor& t, const char* name, bool optional = false) const {
    if (optional && t.numel() == 0) return SkBuf{nullptr, SK_FLOAT32};
    check_device(t, name);
    TORCH_CHECK(t.sizes() == first_.sizes(), "sidkernels::", op_, ": ", name, " must have the shape ",
                first_.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.strides() == first_.strides(), "sidkernels::", op_,
                ": tensor inputs must share one contiguous or channels_last layout; ", name, " has strides ",
                t.strides(), ", the first input ", first_.strides(), " (call sample_major first)");
    return SkBuf{const_cast<void*>(t.const_data_ptr()), dtype_code(op_, name, t.scalar_type())};
  }

  // A per-sample vector [N] (any stride).
  SkRows rows(const Tensor& t, const char* name) const {
    check_device(t, name);
    TORCH_CHECK(t.dim() == 1 && t.size(0) == n_, "sidkernels::", op_, ": ", name, " must have shape [", n_,
                "], got ", t.sizes());
    return SkRows{t.const_data_ptr(), dtype_code(op_, name, t.scalar_type()), t.stride(0)};
  }

  const int64_t* seed(const Tensor& t) const {
    check_device(t, "seed");
    TORCH_CHECK(t.scalar_type() == at::kLong && t.numel() >= 1, "sidkernels::", op_,
                ": seed must be an int64 tensor with one element, got ", t.scalar_type(), " of shape ", t.sizes());
    return t.const_data_ptr<int64_t>();
  }

  int32_t kind(int64_t kind) const {
    TORCH_CHECK(kind >= SK_EDM && kind <= SK_VE, "sidkernels::", op_, ": kind must be 0 (edm), 1 (vp) or 2 (ve), got ",
                kind);
    return static_cast<int32_t>(kind);
  }

  // Outputs: the first input's layout (empty_like), per-sample fp32 vectors, the empty "not asked for".
  Tensor like(const Tensor& t, at::ScalarType dtype, const char* name) const {
    dtype_code(op_, name, dtype);
    return at::empty_like(t, t.options().dtype(dtype), at::MemoryFormat::Preserve);
  }
  Tensor per_sample() const { return at::empty({n_}, first_.options().dtype(at::kFloat)); }
  static Tensor nothing(const Tensor& t, at::ScalarType dtype) { return at::empty({0}, t.options().dtype(dtype)); }
  // The losses' scratch for per-chunk partial sums (undefined when the launcher needs none).
  template <class F>
  Tensor workspace(F&& floats_for) const {
    const int64_t floats = empty() ? 0 : floats_for(n_, d_);
    return floats > 0 ? at::empty({floats}, first_.options().dtype(at::kFloat)) : Tensor();
  }

  static SkBuf out(const Tensor& t) {
    if (t.numel() == 0) return SkBuf{nullptr, SK_FLOAT32};
    return SkBuf{t.mutable_data_ptr(), dtype_code("output", "output", t.scalar_type())};
  }
  static float* floats(const Tensor& t) { return t.defined() ? t.mutable_data_ptr<float>() : nullptr; }

  // Runs a launcher on the device's current stream and checks the launch.
  template <class F>
  void launch(F&& launcher) const {
    if (empty()) return;
    c10::DeviceGuard guard(device_);
    check_launch(op_, launcher(current_stream(op_, device_)));
  }

 private:
  void check_device(const Tensor& t, const char* name) const {
    TORCH_CHECK(t.device() == device_, "sidkernels::", op_, ": ", name, " is on ", t.device(),
                " but the first input is on ", device_, "; put every tensor on one CUDA device");
  }

  const char* op_;
  const Tensor& first_;
  at::Device device_;
  int64_t n_ = 0, d_ = 0;
};

// ------------------------------------------------------------------ noise
std::tuple<Tensor, Tensor, Tensor> add_noise_cuda(const Tensor& x, const Tensor& sigma, const Tensor& seed,
                                                  int64_t kind, double sigma_data,
                                                  std::optional<at::ScalarType> net_dtype, bool want_eps) {
  const Call call("add_noise_cuda", x, "x");
  const SkBuf in = call.samples(x, "x");
  const SkRows s = call.rows(sigma, "sigma");
  const int64_t* seed_ptr = call.seed(seed);
  const int32_t k = call.kind(kind);
  Tensor xt = call.like(x, x.scalar_type(), "x");
  Tensor net = net_dtype ? call.like(x, *net_dtype, "net_dtype") : Call::nothing(x, x.scalar_type());
  Tensor eps = want_eps ? call.like(x, at::kFloat, "eps") : Call::nothing(x, at::kFloat);
  call.launch([&](cudaStream_t stream) {
    return sk_add_noise(in, s, seed_ptr, Call::out(xt), Call::out(net), Call::out(eps), call.n(), call.d(), k,
                        float(sigma_data), stream);
  });
  return {xt, net, eps};
}

// ------------------------------------------------------------------ preconditioning
std::tuple<Tensor, Tensor> precond_in_cuda(const Tensor& x, const Tensor& sigma, int64_t kind, double sigma_data,
                                           at::ScalarType dtype) {
  const Call call("precond_in_cuda", x, "x");
  const SkBuf in = call.samples(x, "x");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.kind(kind);
  Tensor y = call.like(x, dtype, "dtype");
  Tensor c_noise = call.per_sample();
  call.launch([&](cudaStream_t stream) {
    return sk_precond_in(in, s, Call::out(y), Call::floats(c_noise), call.n(), call.d(), k, float(sigma_data),
                         stream);
  });
  return {y, c_noise};
}

Tensor precond_in_bwd_cuda(const Tensor& grad_y, const Tensor& sigma, const Tensor& addend, int64_t kind,
                           double sigma_data, at::ScalarType x_dtype) {
  const Call call("precond_in_bwd_cuda", grad_y, "grad_y");
  const SkBuf gy = call.samples(grad_y, "grad_y");
  const SkBuf add = call.samples(addend, "addend", /*optional=*/true);
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.kind(kind);
  Tensor grad_x = call.like(grad_y, x_dtype, "x_dtype");
  call.launch([&](cudaStream_t stream) {
    return sk_precond_in_bwd(gy, s, add, Call::out(grad_x), call.n(), call.d(), k, float(sigma_data), stream);
  });
  return grad_x;
}

Tensor precond_out_cuda(const Tensor& x, const Tensor& F, const Tensor& sigma, int64_t kind, double sigma_data) {
  const Call call("precond_out_cuda", x, "x");
  const SkBuf in_x = call.samples(x, "x");
  const SkBuf in_f = call.samples(F, "F");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.kind(kind);
  Tensor out = call.like(x, at::kFloat, "out");
  call.launch([&](cudaStream_t stream) {
    return sk_precond_out(in_x, in_f, s, Call::out(out), call.n(), call.d(), k, float(sigma_data), stream);
  });
  return out;
}

std::tuple<Tensor, Tensor> precond_out_bwd_cuda(const Tensor& grad, const Tensor& sigma, int64_t kind,
                                                double sigma_data, std::optional<at::ScalarType> x_dtype,
                                                std::optional<at::ScalarType> f_dtype) {
  const Call call("precond_out_bwd_cuda", grad, "grad");
  const SkBuf g = call.samples(grad, "grad");
  const SkRows s = call.rows(sigma, "sigma");
  const int32_t k = call.kind(kind);
  Tensor grad_x = x_dtype ? call.like(grad, *x_dtype, "x_dtype") : Call::nothing(grad, grad.scalar_type());
  Tensor grad_f = f_dtype ? call.like(grad, *f_dtype, "f_dtype") : Call::nothing(grad, grad.scalar_type());
  call.launch([&](cudaStream_t stream) {
    return sk_precond_out_bwd(g, s, Call::out(grad_x), Call::out(grad_f), call.n(), call.d(), k, float(sigma_data),
                              stream);
  });
  return {grad_x, grad_f};
}

// ------------------------------------------------------------------ losses
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> sid_loss_cuda(const Tensor& teacher_out, const Tensor& fake_out,
                                                                 const Tensor& x_g, double alpha, double weight_clip,
                                                                 bool normalize, bool grad_a, bool grad_b,
                                                                 bool grad_x) {
  const Call call("sid_loss_cuda", teacher_out, "teacher_out");
  const SkBuf a = call.samples(teacher_out, "teacher_out");
  const SkBuf b = call.samples(fake_out, "fake_out");
  const SkBuf x = call.samples(x_g, "x_g");
  Tensor loss = call.per_sample(), scale = call.per_sample();
  auto grad = [&](const Tensor& t, bool want, const char* name) {
    return want ? call.like(t, t.scalar_type(), name) : Call::nothing(t, t.scalar_type());
  };
  Tensor ga = grad(teacher_out, grad_a, "teacher_out"), gb = grad(fake_out, grad_b, "fake_out");
  Tensor gx = grad(x_g, grad_x, "x_g");
  Tensor workspace = call.workspace(sk_sid_loss_workspace);
  call.launch([&](cudaStream_t stream) {
    return sk_sid_loss(a, b, x, Call::out(ga), Call::out(gb), Call::out(gx), Call::floats(loss), Call::floats(scale),
                       Call::floats(workspace), call.n(), call.d(), float(alpha), float(weight_clip), normalize,
                       stream);
  });
  return {loss, scale, ga, gb, gx};
}

std::tuple<Tensor, Tensor, Tensor> fake_score_loss_cuda(const Tensor& denoised, const Tensor& target,
                                                        const Tensor& sigma, double sigma_data, bool want_grad) {
  const Call call("fake_score_loss_cuda", denoised, "denoised");
  const SkBuf den = call.samples(denoised, "denoised");
  const SkBuf y = call.samples(target, "target");
  const SkRows s = call.rows(sigma, "sigma");
  Tensor loss = call.per_sample(), scale = call.per_sample();
  Tensor r = want_grad ? call.like(denoised, c10::promoteTypes(denoised.scalar_type(), target.scalar_type()), "r")
                       : Call::nothing(denoised, denoised.scalar_type());
  Tensor workspace = call.workspace(sk_fake_score_loss_workspace);
  call.launch([&](cudaStream_t stream) {
    return sk_fake_score_loss(den, y, s, Call::out(r), Call::floats(loss), Call::floats(scale),
                              Call::floats(workspace), call.n(), call.d(), float(sigma_data), stream);
  });
  return {loss, scale, r};
}

Tensor rowscale_cuda(const Tensor& grad_out, const Tensor& scale, const Tensor& src, double coef,
                     at::ScalarType dtype) {
  const Call call("rowscale_cuda", src, "src");
  const SkBuf in = call.samples(src, "src");
  const SkRows go = call.rows(grad_out, "grad_out");
  const SkRows sc = call.rows(scale, "scale");
  Tensor out = call.like(src, dtype, "dtype");
  call.launch([&](cudaStream_t stream) {
    return sk_rowscale(go, sc, in, Call::out(out), call.n(), call.d(), float(coef), stream);
  });
  return out;
}

// ------------------------------------------------------------------ distances
int32_t distance_kind(const char* op, int64_t kind) {
  TORCH_CHECK(kind >= 0 && kind <= 2, "sidkernels::", op, ": kind must be 0 (l2), 1 (l1) or 2 (pseudo_huber), got ",
              kind);
  return static_cast<int32_t>(kind);
}

std::tuple<Tensor, Tensor> distance_cuda(const Tensor& a, const Tensor& b, int64_t kind, double c) {
  const Call call("distance_cuda", a, "a");
  const SkBuf in_a = call.samples(a, "a");
  const SkBuf in_b = call.samples(b, "b");
  const int32_t k = distance_kind("distance_cuda", kind);
  Tensor dist = call.per_sample(), scale = call.per_sample();
  Tensor workspace = call.workspace(sk_distance_workspace);
  call.launch([&](cudaStream_t stream) {
    return sk_distance(in_a, in_b, Call::floats(dist), Call::floats(scale), Call::floats(workspace), call.n(),
                       call.d(), k, float(c), stream);
  });
  return {dist, scale};
}

std::tuple<Tensor, Tensor> distance_bwd_cuda(const Tensor& grad_out, const Tensor& scale, const Tensor& a,
                                             const Tensor& b, int64_t kind, std::optional<at::ScalarType> a_dtype,
                                             std::optional<at::ScalarType> b_dtype) {
  const Call call("distance_bwd_cuda", a, "a");
  const SkBuf in_a = call.samples(a, "a");
  const SkBuf in_b = call.samples(b, "b");
  const SkRows go = call.rows(grad_out, "grad_out");
  const SkRows sc = call.rows(scale, "scale");
  const int32_t k = distance_kind("distance_bwd_cuda", kind);
  Tensor grad_a = a_dtype ? call.like(a, *a_dtype, "a_dtype") : Call::nothing(a, a.scalar_type());
  Tensor grad_b = b_dtype ? call.like(a, *b_dtype, "b_dtype") : Call::nothing(a, a.scalar_type());
  call.launch([&](cudaStream_t stream) {
    return sk_distance_bwd(go, sc, in_a, in_b, Call::out(grad_a), Call::out(grad_b), call.n(), call.d(), k, stream);
  });
  return {grad_a, grad_b};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sidkernels, m) {
  m.def("add_noise_cuda(Tensor x, Tensor sigma, Tensor seed, SymInt kind, float sigma_data, ScalarType? net_dtype, "
        "bool want_eps) -> (Tensor, Tensor, Tensor)");
  m.def("precond_in_cuda(Tensor x, Tensor sigma, SymInt kind, float sigma_data, ScalarType dtype) -> (Tensor, Tensor)");
  m.def("precond_in_bwd_cuda(Tensor grad_y, Tensor sigma, Tensor addend, SymInt kind, float sigma_data, "
        "ScalarType x_dtype) -> Tensor");
  m.def("precond_out_cuda(Tensor x, Tensor F, Tensor sigma, SymInt kind, float sigma_data) -> Tensor");
  m.def("precond_out_bwd_cuda(Tensor grad, Tensor sigma, SymInt kind, float sigma_data, ScalarType? x_dtype, "
        "ScalarType? f_dtype) -> (Tensor, Tensor)");
  m.def("sid_loss_cuda(Tensor teacher_out, Tensor fake_out, Tensor x_g, float alpha, float weight_clip, "
        "bool normalize, bool grad_a, bool grad_b, bool grad_x) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("fake_score_loss_cuda(Tensor denoised, Tensor target, Tensor sigma, float sigma_data, bool want_grad) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("rowscale_cuda(Tensor grad_out, Tensor scale, Tensor src, float coef, ScalarType dtype) -> Tensor");
  m.def("distance_cuda(Tensor a, Tensor b, SymInt kind, float c) -> (Tensor, Tensor)");
  m.def("distance_bwd_cuda(Tensor grad_out, Tensor scale, Tensor a, Tensor b, SymInt kind, ScalarType? a_dtype, "
        "ScalarType? b_dtype) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sidkernels, SK_DISPATCH_KEY, m) {
  m.impl("add_noise_cuda", &add_noise_cuda);
  m.impl("precond_in_cuda", &precond_in_cuda);
  m.impl("precond_in_bwd_cuda", &precond_in_bwd_cuda);
  m.impl("precond_out_cuda", &precond_out_cuda);
  m.impl("precond_out_bwd_cuda", &precond_out_bwd_cuda);
  m.impl("sid_loss_cuda", &sid_loss_cuda);
  m.impl("fake_score_loss_cuda", &fake_score_loss_cuda);
  m.impl("rowscale_cuda", &rowscale_cuda);
  m.impl("distance_cuda", &distance_cuda);
  m.impl("distance_bwd_cuda", &distance_bwd_cuda);
}
