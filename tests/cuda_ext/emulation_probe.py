"""Runs one check of the host emulation's probe library (emulation_probe.cu) in this process and prints a
JSON line; test_host_emulation.py starts it with the sanitizer runtime preloaded.

    python -m tests.cuda_ext.emulation_probe LIBRARY CHECK
"""
import ctypes
import json
import sys

import numpy as np

INVALID_CONFIGURATION, LAUNCH_FAILURE = 9, 719


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


def _gpu_order_block_sum(x: np.ndarray) -> np.float32:
    """sk::block_sum's fp32 order: an xor butterfly (16, 8, 4, 2, 1) in each warp, lane 0's value, then
    the warps' values added in order from 0."""
    warps = x.astype(np.float32).reshape(-1, 32)
    lanes = np.arange(32)
    for offset in (16, 8, 4, 2, 1):
        warps = warps + warps[:, lanes ^ offset]
    total = np.float32(0)
    for w in warps[:, 0]:
        total = np.float32(total + w)
    return total


def block_sum(lib):
    report = {}
    for threads in (32, 96, 256):
        x = np.random.default_rng(threads).standard_normal(threads).astype(np.float32)
        out = np.zeros(2, np.float32)
        err = lib.probe_block_sum(_ptr(x), threads, _ptr(out))
        expected = [_gpu_order_block_sum(x), _gpu_order_block_sum(x * x)]
        report[threads] = {"err": err, "bitwise": [bool(out[k] == expected[k]) for k in range(2)]}
    return report


def divergent_barrier(lib):
    out = np.zeros(64, np.float32)
    return {"err": lib.probe_divergent_barrier(64, 3, _ptr(out)), "after": lib.probe_launch(1, 1, 32)}


def partial_warp(lib):
    out = np.zeros(64, np.float32)
    return {"err": lib.probe_partial_warp(64, _ptr(out))}


def launch_limits(lib):
    configs = {"1024 threads": (1, 1, 1024), "1025 threads": (1, 1, 1025), "grid.y 65535": (1, 65535, 1),
               "grid.y 65536": (1, 65536, 32), "empty grid": (0, 1, 32)}
    return {name: lib.probe_launch(*config) for name, config in configs.items()}


def read_past_end(lib):
    x = np.ones(4096, np.float32)  # larger than numpy's small-buffer cache: its own exact-size allocation
    out = np.zeros(1, np.float32)
    return {"err": lib.probe_read_past_end(_ptr(x), x.size, _ptr(out))}


def _vector_load(lib, misaligned):
    raw = np.zeros(64, np.uint16)
    aligned = (-raw.ctypes.data // 2) % 8  # first element index at a 16-byte boundary
    out = np.zeros(1, np.float32)
    return {"err": lib.probe_vector_load(_ptr(raw), aligned + int(misaligned), _ptr(out))}


def aligned_vector_load(lib):
    return _vector_load(lib, misaligned=False)


def misaligned_vector_load(lib):
    return _vector_load(lib, misaligned=True)


CHECKS = {f.__name__: f for f in (block_sum, divergent_barrier, partial_warp, launch_limits, read_past_end,
                                  aligned_vector_load, misaligned_vector_load)}


def main(library: str, check: str) -> None:
    lib = ctypes.CDLL(library)
    lib.probe_read_past_end.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    lib.probe_vector_load.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    lib.probe_launch.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
    print(json.dumps(CHECKS[check](lib)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
