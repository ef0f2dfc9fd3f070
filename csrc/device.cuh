// Device helpers shared by the sidkernels CUDA kernels (no torch headers: see buffers.h).
//
// Work decomposition.  Every kernel sees an [N, D] sample-major problem and runs on a 2-D grid
// (N samples along x, chunks of one sample along y), so a long sample is split over several blocks and a
// small batch still fills the GPU; all indices are int64.  Inside sample n (global elements
// [s0, s1) = [n*D, n*D + D)) the elements are visited as
//   * aligned groups of kVec = 8 elements starting at global indices that are multiples of 8, shared
//     out to the sample's chunks; when every buffer's base pointer is 16-byte aligned a group is one
//     16-byte load per fp16/bf16 tensor (two per fp32 tensor), otherwise eight scalar loads;
//   * the < 8 elements before the first aligned group and the < 8 after the last one (scalar head
//     and tail, done by chunk 0).
// A group never straddles two samples, so per-sample factors are loaded once per thread.
//
// Storage dtypes are a runtime argument of each buffer (fp32 / fp16 / bf16): the dtype switch is
// uniform over the grid, costs a few instructions per 8 elements of a memory-bound kernel, and lets one
// kernel instantiation serve every mix of input and output dtypes.  Math is fp32; stores round to
// nearest even.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "buffers.h"
#include "target.h"

namespace sk {

constexpr int kVec = 8;             // elements per thread per step
constexpr int kMaxThreads = 256;    // threads per block of the row kernels
constexpr int64_t kMaxChunks = 65535;  // gridDim.y limit
constexpr int kFinalizeWarps = 8;   // samples per block of the finalize kernels

// ------------------------------------------------------------------ launch geometry
// Per-launch constants of a row kernel: D elements per sample, `chunk` elements of a sample per block
// (a multiple of kVec * blockDim.x).
struct Geometry {
  int64_t d;
  int64_t chunk;
};

struct RowLaunch {
  dim3 grid;
  dim3 block;
  Geometry geo;
  bool ok;  // false: N is beyond the grid limit
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads: the next power of two of D / 8 in [32, 256]; one step of kVec elements per thread, more steps
// per block only when a sample would otherwise need more than 65535 chunks.
inline RowLaunch row_launch(int64_t n, int64_t d) {
  int threads = 32;
  while (threads < kMaxThreads && threads * int64_t(kVec) < d) threads *= 2;
  const int64_t step = int64_t(threads) * kVec;
  const int64_t chunk = step * (d > 0 ? ceil_div(ceil_div(d, step), kMaxChunks) : 1);
  RowLaunch l;
  l.grid = dim3(unsigned(n), unsigned(ceil_div(d, chunk)), 1);
  l.block = dim3(unsigned(threads), 1, 1);
  l.geo = Geometry{d, chunk};
  l.ok = n >= 1 && n <= INT32_MAX && d >= 1;
  return l;
}

// True when every present buffer's base address is 16-byte aligned (the vector path's condition).
template <class... Bufs>
inline bool aligned16(const Bufs&... bufs) {
  return ((bufs.data == nullptr || (reinterpret_cast<uintptr_t>(bufs.data) & 15) == 0) && ...);
}

// Launch a row kernel (template <bool VEC> __global__ void k(Geometry, P...)) on an [n, d] problem:
// the vector instantiation when `vec`, the scalar one otherwise.
template <class... P, class... A>
inline cudaError_t launch_rows(void (*vec_kernel)(Geometry, P...), void (*scalar_kernel)(Geometry, P...), bool vec,
                               int64_t n, int64_t d, cudaStream_t stream, const A&... args) {
  const RowLaunch l = row_launch(n, d);
  if (!l.ok) return cudaErrorInvalidConfiguration;
  SK_LAUNCH(vec ? vec_kernel : scalar_kernel, l.grid, l.block, stream)(l.geo, static_cast<P>(args)...);
  return cudaGetLastError();
}

// ------------------------------------------------------------------ loads and stores
__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }
__device__ __forceinline__ float half_bits_to_float(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}
__device__ __forceinline__ uint32_t float_to_bits(float v, int dtype) {
  return dtype == SK_FLOAT16 ? uint32_t(__half_as_ushort(__float2half_rn(v)))
                             : uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

__device__ __forceinline__ float load1(const void* p, int dtype, int64_t i) {
  switch (dtype) {
    case SK_FLOAT16: return __half2float(static_cast<const __half*>(p)[i]);
    case SK_BFLOAT16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store1(void* p, int dtype, int64_t i, float v) {
  switch (dtype) {
    case SK_FLOAT16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case SK_BFLOAT16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float*>(p)[i] = v;
  }
}

// W elements at global index g into v.  W == kVec with VEC: vector loads (g % 8 == 0, base aligned).
template <int W, bool VEC>
__device__ __forceinline__ void load(const SkBuf& b, int64_t g, float (&v)[W]) {
  if constexpr (W == kVec && VEC) {
    if (b.dtype == SK_FLOAT32) {
      const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(b.data) + g);
      const float4 lo = q[0], hi = q[1];
      v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w;
      v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
    } else {
      const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(b.data) + g);
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (b.dtype == SK_BFLOAT16) {
          v[2 * k] = bf16_bits_to_float(words[k] & 0xffffu);
          v[2 * k + 1] = bf16_bits_to_float(words[k] >> 16);
        } else {
          v[2 * k] = half_bits_to_float(words[k] & 0xffffu);
          v[2 * k + 1] = half_bits_to_float(words[k] >> 16);
        }
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) v[k] = load1(b.data, b.dtype, g + k);
  }
}

template <int W, bool VEC>
__device__ __forceinline__ void store(const SkBuf& b, int64_t g, const float (&v)[W]) {
  if constexpr (W == kVec && VEC) {
    if (b.dtype == SK_FLOAT32) {
      float4* q = reinterpret_cast<float4*>(static_cast<float*>(b.data) + g);
      q[0] = make_float4(v[0], v[1], v[2], v[3]);
      q[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      uint32_t words[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        words[k] = float_to_bits(v[2 * k], b.dtype) | (float_to_bits(v[2 * k + 1], b.dtype) << 16);
      }
      *reinterpret_cast<uint4*>(static_cast<uint16_t*>(b.data) + g) =
          make_uint4(words[0], words[1], words[2], words[3]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) store1(b.data, b.dtype, g + k, v[k]);
  }
}

__device__ __forceinline__ float load_row(const SkRows& r, int64_t n) { return load1(r.data, r.dtype, n * r.stride); }

// ------------------------------------------------------------------ the per-sample visit
// Calls body.template run<kVec, VEC>(g) for this block's aligned groups of sample n and
// body.template run<1, VEC>(i) for the sample's unaligned head/tail elements (chunk 0 only).
template <bool VEC, class Body>
__device__ __forceinline__ void visit_sample(int64_t n, const Geometry& geo, Body& body) {
  const int64_t s0 = n * geo.d, s1 = s0 + geo.d;
  const int64_t a0 = min((s0 + kVec - 1) / kVec * kVec, s1);
  const int64_t a1 = max(a0, s1 / kVec * kVec);
  const int64_t c0 = a0 + int64_t(blockIdx.y) * geo.chunk;
  const int64_t c1 = min(a1, c0 + geo.chunk);
  for (int64_t g = c0 + int64_t(threadIdx.x) * kVec; g < c1; g += int64_t(blockDim.x) * kVec) {
    body.template run<kVec, VEC>(g);
  }
  if (blockIdx.y == 0 && threadIdx.x < kVec) {
    const int64_t head = s0 + threadIdx.x, tail = a1 + threadIdx.x;
    if (head < a0) body.template run<1, VEC>(head);
    if (tail < s1) body.template run<1, VEC>(tail);
  }
}

// ------------------------------------------------------------------ deterministic reductions
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Block sum of K values per thread (blockDim.x a multiple of 32, at most kMaxThreads); the result is in
// thread 0.  The order of the additions depends only on blockDim.x, never on scheduling.
template <int K>
__device__ __forceinline__ void block_sum(float (&v)[K]) {
  __shared__ float partial[K][kMaxThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    v[k] = warp_sum(v[k]);
    if (lane == 0) partial[k][warp] = v[k];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float total = 0.0f;
      for (int w = 0; w < int(blockDim.x / 32); ++w) total += partial[k][w];
      v[k] = total;
    }
  }
}

// Sum of the C partials of row `row` of partials[C*N*k + row*C + c] for each of K kinds: one warp per row,
// strided over the chunks then a fixed butterfly (deterministic).  The result is in every lane.
template <int K>
__device__ __forceinline__ void sum_partials(const float* part, int64_t rows, int64_t chunks, int64_t row,
                                             float (&v)[K]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float* p = part + (int64_t(k) * rows + row) * chunks;
    float acc = 0.0f;
    for (int64_t c = lane; c < chunks; c += 32) acc += p[c];
    v[k] = warp_sum(acc);
  }
}

// ------------------------------------------------------------------ EDM / VP / VE coefficients (docs/ops.md)
struct Coefficients {
  float c_skip, c_out, c_in;
};

// edm: c_in = 1/sqrt(s^2 + sd^2), c_skip = sd^2 c_in^2, c_out = s sd c_in;  vp: (1, -s, 1/sqrt(s^2 + 1));
// ve: (1, s, 1).
__device__ __forceinline__ Coefficients precond_coefficients(int kind, float s, float sd) {
  if (kind == SK_PRECOND_EDM) {
    const float c_in = rsqrtf(s * s + sd * sd);
    return {sd * sd * c_in * c_in, s * sd * c_in, c_in};
  }
  if (kind == SK_PRECOND_VP) return {1.0f, -s, rsqrtf(s * s + 1.0f)};
  return {1.0f, s, 1.0f};
}

// edm: ln(s)/4;  vp: (M-1) (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d (abi.h);  ve: ln(s/2).
__device__ __forceinline__ float precond_c_noise(int kind, float s) {
  if (kind == SK_PRECOND_EDM) return logf(s) * 0.25f;
  if (kind == SK_PRECOND_VP) {
    const float t = sqrtf(SK_VP_BETA_MIN * SK_VP_BETA_MIN + 2.0f * SK_VP_BETA_D * log1pf(s * s)) - SK_VP_BETA_MIN;
    return (SK_VP_M - 1.0f) * t / SK_VP_BETA_D;
  }
  return logf(s * 0.5f);
}

// ------------------------------------------------------------------ Philox 4x32-10, four normals per call
// The stream of sidkernels/ops/add_noise/reference.py (Triton's tl.randn4x):
//   element i of sample n: counter (i >> 2, n, 0, 0), key (seed mod 2^32, seed >> 32); per round
//     c0' = hi(B c2) ^ c1 ^ k0,  c2' = hi(A c0) ^ c3 ^ k1,  c1' = lo(B c2),  c3' = lo(A c0),
//     k0 += 0x9E3779B9, k1 += 0xBB67AE85,   A = 0xD2511F53, B = 0xCD9E8D57;
//   u_k = int32(o_k) mapped to [0, 1) by (o < 0 ? ~o : o) * 4.6566127342e-10;
//   two Box-Muller pairs: a = sqrt(-2 ln max(u0, 1e-7)), b = sqrt(-2 ln max(u2, 1e-7)),
//   normals (a cos 2pi u1, a sin 2pi u1, b cos 2pi u3, b sin 2pi u3), element i takes number i & 3.
//   (fp32 math, IEEE logf / sqrtf; the angles through cospif / sinpif)
__device__ __forceinline__ float uniform_from_bits(uint32_t bits) {
  const int32_t v = static_cast<int32_t>(bits);
  return float(v < 0 ? ~v : v) * 4.6566127342e-10f;
}

// Four normals of one Philox call; pick(r) selects without indexing an array (which would go to local memory).
struct Normals4 {
  float n0, n1, n2, n3;
  __device__ __forceinline__ float pick(int64_t r) const { return r == 0 ? n0 : r == 1 ? n1 : r == 2 ? n2 : n3; }
};

__device__ __forceinline__ Normals4 philox_normals4(uint32_t k0, uint32_t k1, uint32_t group, uint32_t sample) {
  uint32_t c0 = group, c1 = sample, c2 = 0, c3 = 0;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi_b = __umulhi(0xCD9E8D57u, c2), lo_b = 0xCD9E8D57u * c2;
    const uint32_t hi_a = __umulhi(0xD2511F53u, c0), lo_a = 0xD2511F53u * c0;
    c0 = hi_b ^ c1 ^ k0;
    c2 = hi_a ^ c3 ^ k1;
    c1 = lo_b;
    c3 = lo_a;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const float a = sqrtf(-2.0f * logf(fmaxf(1.0e-7f, uniform_from_bits(c0))));
  const float b = sqrtf(-2.0f * logf(fmaxf(1.0e-7f, uniform_from_bits(c2))));
  // cos(2 pi u) = cospi(2 u): no large-argument reduction (whose table would live in local memory); it differs
  // from the fp32 product 2pi * u of Triton's stream by the rounding of that product (a few ulps).
  const float t1 = 2.0f * uniform_from_bits(c1), t3 = 2.0f * uniform_from_bits(c3);
  return Normals4{a * cospif(t1), a * sinpif(t1), b * cospif(t3), b * sinpif(t3)};
}

// ------------------------------------------------------------------ the losses' two-stage reduction
// Number of fp32 scratch elements a loss with `kinds` partial sums needs for an [n, d] problem (0 when every
// sample fits one block and the loss is finished in a single launch).
inline int64_t partials_workspace(int64_t n, int64_t d, int kinds) {
  const RowLaunch l = row_launch(n, d);
  return l.grid.y > 1 ? int64_t(kinds) * n * l.grid.y : 0;
}

}  // namespace sk
