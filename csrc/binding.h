// Host helpers of the bindings (*.cpp): validation of one op call's arguments, output allocation, the launch.
//
// Every binding implements a `sidkernels::NAME_cuda` operator whose schema, fake and autograd are defined in
// Python (sidkernels/ops/NAME/__init__.py); the binding checks each argument against the kernels' contract
// (device, dtype, shape, sample-major layout) with a message naming the op and the argument, allocates the
// outputs like the Python fake does, and runs the launcher of NAME.cu on torch's current stream inside the
// inputs' device.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "buffers.h"
#include "target.h"

namespace sk {

using at::Tensor;

inline void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "sidkernels::", op, ": kernel launch failed: ", cudaGetErrorString(err));
}

inline int32_t dtype_code(const char* op, const char* arg, at::ScalarType t) {
  switch (t) {
    case at::kFloat: return SK_FLOAT32;
    case at::kHalf: return SK_FLOAT16;
    case at::kBFloat16: return SK_BFLOAT16;
    default:
      TORCH_CHECK(false, "sidkernels::", op, ": ", arg, " is ", t,
                  "; the CUDA kernels take Float, Half or BFloat16 (use backend='triton' or 'torch' for ", t, ")");
  }
}

inline bool sample_dense(const Tensor& t) {
  return t.is_contiguous() || (t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
         (t.dim() == 5 && t.is_contiguous(at::MemoryFormat::ChannelsLast3d));
}

// One shape, and the same strides on every dimension of size > 1 (a size-1 dimension's stride is arbitrary).
inline bool same_layout(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t i = 0; i < a.dim(); ++i) {
    if (a.size(i) > 1 && a.stride(i) != b.stride(i)) return false;
  }
  return true;
}

// Validates the arguments of one op call against its first sample-major input and converts them to the
// launchers' C types.
class Call {
 public:
  Call(const char* op, const Tensor& first, const char* name) : op_(op), first_(first), device_(first.device()) {
    TORCH_CHECK(SK_ON_DEVICE(first), "sidkernels::", op, ": ", name, " is on ", first.device(),
                "; the CUDA kernels take tensors on the device they were built for");
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
    TORCH_CHECK(same_layout(t, first_), "sidkernels::", op_,
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

  int32_t kind(int64_t kind, int64_t last, const char* names) const {
    TORCH_CHECK(kind >= 0 && kind <= last, "sidkernels::", op_, ": kind must be one of ", names, ", got ", kind);
    return static_cast<int32_t>(kind);
  }
  int32_t precond(int64_t kind) const { return this->kind(kind, SK_PRECOND_VE, "0 (edm), 1 (vp), 2 (ve)"); }

  // Outputs: the first input's layout (empty_like), per-sample fp32 vectors, the empty "not asked for".
  Tensor like(const Tensor& t, at::ScalarType dtype, const char* name) const {
    dtype_code(op_, name, dtype);
    return at::empty_like(t, t.options().dtype(dtype), at::MemoryFormat::Preserve);
  }
  Tensor maybe_like(const Tensor& t, std::optional<at::ScalarType> dtype, const char* name) const {
    return dtype ? like(t, *dtype, name) : nothing(t, t.scalar_type());
  }
  Tensor per_sample() const { return at::empty({n_}, first_.options().dtype(at::kFloat)); }
  static Tensor nothing(const Tensor& t, at::ScalarType dtype) { return at::empty({0}, t.options().dtype(dtype)); }
  // A loss's scratch for per-chunk partial sums (undefined when the launcher needs none).
  Tensor workspace(int64_t floats) const {
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
    check_launch(op_, launcher(SK_CURRENT_STREAM(device_)));
  }

 private:
  void check_device(const Tensor& t, const char* name) const {
    TORCH_CHECK(t.device() == device_, "sidkernels::", op_, ": ", name, " is on ", t.device(),
                " but the first input is on ", device_, "; put every tensor on one device");
  }

  const char* op_;
  const Tensor& first_;
  at::Device device_;
  int64_t n_ = 0, d_ = 0;
};

}  // namespace sk
