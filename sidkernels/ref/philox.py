"""NumPy oracle of the noise kernels' random stream (Triton's ``tl.randn``), for tests of every backend.

    counter = (i mod 2^32, i >> 32, 0, 0),  key = (seed mod 2^32, seed >> 32)      i: element index
    Philox 4x32, 10 rounds (round multipliers 0xD2511F53, 0xCD9E8D57; key bumps 0x9E3779B9, 0xBB67AE85)
    u_k    = int32(o_k), u_k <- -u_k - 1 if negative, times 4.6566127342e-10       (uniform in [0, 1))
    eps_i  = sqrt(-2 ln max(u_0, 1e-7)) * cos(2 pi u_1)                             (fp32 math)
"""
from __future__ import annotations

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_ROUND_A, _ROUND_B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_KEY_A, _KEY_B = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)


def philox4x32(seed: int, offsets: np.ndarray, rounds: int = 10):
    """The four uint32 Philox outputs for each offset (as uint64 arrays)."""
    offsets = np.asarray(offsets, dtype=np.uint64)
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    c0, c1 = offsets & _M32, offsets >> np.uint64(32)
    c2 = c3 = np.zeros_like(offsets)
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


def philox_randn(seed: int, offsets: np.ndarray) -> np.ndarray:
    """Standard normals (float32), one per offset, identical to the noise kernels' eps."""
    o0, o1, _, _ = philox4x32(seed, offsets)
    u1 = np.maximum(np.float32(1e-7), _uniform(o0))
    u2 = _uniform(o1)
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    return (r * np.cos(np.float32(6.283185307179586) * u2)).astype(np.float32)
