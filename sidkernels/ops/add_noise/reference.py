"""References of noise injection: the plain PyTorch math and the NumPy oracle of the kernels' random stream.

Math: ``x_t = x + sigma[n] eps`` (in x's dtype) and ``net_in = c_in(sigma[n]) x_t`` (from the unrounded x_t).

Random stream of the Triton and CUDA kernels (their eps depends only on the seed and each element's position,
never on the block size, the grid or a vector path):

    element (n, i) of sample n, i = 0 .. D-1 in memory order;   group q = i div 4,  r = i mod 4
    (o_0, o_1, o_2, o_3) = Philox 4x32-10 of counter (q, n, 0, 0) and key (seed mod 2^32, seed div 2^32)
                           (round multipliers 0xD2511F53, 0xCD9E8D57; key bumps 0x9E3779B9, 0xBB67AE85)
    u_k = int32(o_k), u_k <- -u_k - 1 if negative, times 4.6566127342e-10              (uniform in [0, 1))
    two Box-Muller pairs:  a = sqrt(-2 ln max(u_0, 1e-7)),  b = sqrt(-2 ln max(u_2, 1e-7))
    eps[n, i] = (a cos 2pi u_1,  a sin 2pi u_1,  b cos 2pi u_3,  b sin 2pi u_3)[r]      (fp32 math)

so one Philox call gives four normals.  Triton's ``tl.randn4x`` with offset ``n * 2^32 + q`` computes exactly
this; the interpreter matches the oracle bit for bit, compiled kernels to a few ulps (approximate
transcendental functions and FMA contraction).
"""
from __future__ import annotations

import numpy as np
import torch

from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels.ops._precond import coefficients, per_sample

_M32 = np.uint64(0xFFFFFFFF)
_ROUND_A, _ROUND_B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_KEY_A, _KEY_B = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_TWO_PI = np.float32(6.283185307179586)


def add_noise_ref(x, sigma, eps, *, precond="edm", sigma_data=SIGMA_DATA, net_dtype=None):
    """Return ``(x_t, net_input)``: ``x_t = x + sigma*eps`` in x's dtype and ``c_in(sigma) * x_t`` in ``net_dtype``.

    The network input is formed from the fp32 (fp64 for fp64 x) ``x_t`` before it is rounded to x's dtype, as
    the fused kernels do.
    """
    acc = acc_dtype(x.dtype)
    s = per_sample(sigma.to(acc), x)
    xt = x.to(acc) + s * eps.to(acc)
    c_in = coefficients(s, precond, sigma_data)[2]
    return xt.to(x.dtype), (c_in * xt).to(net_dtype or x.dtype)


def philox4x32(seed: int, c0: np.ndarray, c1: np.ndarray, rounds: int = 10):
    """The four uint32 Philox outputs of counters ``(c0, c1, 0, 0)`` (uint64 arrays holding uint32 values)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    c0 = np.asarray(c0, dtype=np.uint64) & _M32
    c1 = np.asarray(c1, dtype=np.uint64) & _M32
    c2 = c3 = np.zeros_like(c0)
    for _ in range(rounds):
        p_b, p_a = _ROUND_B * c2, _ROUND_A * c0         # exact: both factors < 2^32
        c0, c1, c2, c3 = ((p_b >> np.uint64(32)) ^ c1 ^ k0, p_b & _M32,
                          (p_a >> np.uint64(32)) ^ c3 ^ k1, p_a & _M32)
        k0, k1 = (k0 + _KEY_A) & _M32, (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


def _uniform(o: np.ndarray) -> np.ndarray:
    x = o.astype(np.uint32).view(np.int32).astype(np.int64)
    x = np.where(x < 0, -x - 1, x)
    return x.astype(np.float32) * np.float32(4.6566127342e-10)


def philox_normals(seed: int, n: int, d: int) -> np.ndarray:
    """eps ``[n, d]`` (float32) of the kernels' stream for n samples of d elements (see the module docstring)."""
    groups = (d + 3) // 4
    q = np.tile(np.arange(groups, dtype=np.uint64), n)
    rows = np.repeat(np.arange(n, dtype=np.uint64), groups)
    o0, o1, o2, o3 = philox4x32(seed, q, rows)
    a = np.sqrt(np.float32(-2.0) * np.log(np.maximum(np.float32(1e-7), _uniform(o0))))
    b = np.sqrt(np.float32(-2.0) * np.log(np.maximum(np.float32(1e-7), _uniform(o2))))
    t1, t3 = _TWO_PI * _uniform(o1), _TWO_PI * _uniform(o3)
    four = np.stack([a * np.cos(t1), a * np.sin(t1), b * np.cos(t3), b * np.sin(t3)], axis=-1).astype(np.float32)
    return four.reshape(n, groups * 4)[:, :d]


def philox_noise_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The kernels' eps for a sample-major tensor shaped like ``x`` (float32, on the CPU, x's memory order)."""
    n = x.shape[0]
    flat = torch.from_numpy(philox_normals(seed, n, x.numel() // n))
    if x.is_contiguous():
        return flat.view(x.shape)
    # channels_last: memory order is (N, H, W, C)
    return flat.view(x.shape[0], *x.shape[2:], x.shape[1]).movedim(-1, 1)
