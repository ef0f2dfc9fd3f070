"""Compiles every Triton kernel exactly as the ops launch it, for a real GPU target, on a machine without a
GPU; run by test_lowering.py in a fresh interpreter without TRITON_INTERPRET.  Prints one JSON report.

    python -m tests.kernels.lowering_probe ARCH      # 80 (A100) or 90 (H100/H200)

A compile-only Triton driver answers "sm_ARCH" for the current target, and every ``JITFunction.run`` is
turned into a warm-up (compile, never launch), so the launchers run unchanged on CPU tensors and Triton
specialises the arguments as it would on the GPU (16-byte aligned pointers, sizes divisible by 16).  The
launch configuration is the GPU's (block sizes chosen for an H100's 132 SMs), on the benchmark shapes.  For
each compiled kernel the report holds the global load/store forms in its PTX and the registers, stack and
local (spill) memory of its cubin (``cuobjdump -res-usage`` from the Triton wheel).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

# the kernel benchmark's shapes (every D divisible by 16), and one that is not (scalar accesses)
SHAPES = {"cifar": (256, 3, 32, 32), "64px": (128, 3, 64, 64), "latent": (32, 4, 128, 128), "odd": (3, 3, 37, 37)}
H100_SMS = 132


class CompileOnlyDriver:
    """The parts of a Triton driver that compiling needs: device 0, a null stream, the target."""

    def __init__(self, arch: int):
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target


def _cases():
    """(name, thunk) pairs: every op with its option combinations, fp32 and bf16, aligned and odd shapes."""
    from sidkernels.ops import kernel_op

    op = {name: kernel_op(name, "triton") for name in ("add_noise", "precond_in", "precond_in_bwd", "precond_out",
                                                      "precond_out_bwd", "sid_loss", "fake_score_loss", "rowscale",
                                                      "distance", "distance_bwd")}
    seed = torch.tensor([1])
    for shape_name, shape in SHAPES.items():
        n = shape[0]
        sigma, rows = torch.rand(n) + 0.1, torch.rand(n)
        for dtype in (torch.float32, torch.bfloat16):
            x, f, g = (torch.randn(shape).to(dtype) for _ in range(3))
            tag = f"{shape_name}-{str(dtype).removeprefix('torch.')}"
            for kind in (0, 1, 2):
                yield f"add_noise-k{kind}-{tag}", lambda: op["add_noise"](x, sigma, seed, kind, 0.5, torch.bfloat16,
                                                                           True)
                yield f"precond_in-k{kind}-{tag}", lambda: op["precond_in"](x, sigma, kind, 0.5, torch.bfloat16)
                yield f"precond_out-k{kind}-{tag}", lambda: op["precond_out"](x, f, sigma, kind, 0.5)
            yield f"add_noise-plain-{tag}", lambda: op["add_noise"](x, sigma, seed, 0, 0.5, None, False)
            yield f"precond_in_bwd-{tag}", lambda: op["precond_in_bwd"](g, sigma, x, 0, 0.5, torch.float32)
            yield f"precond_in_bwd-noaddend-{tag}", lambda: op["precond_in_bwd"](g, sigma, torch.empty(0), 0, 0.5,
                                                                                 dtype)
            yield f"precond_out_bwd-{tag}", lambda: op["precond_out_bwd"](g, sigma, 0, 0.5, torch.float32, dtype)
            yield f"sid_loss-{tag}", lambda: op["sid_loss"](x, f, g, 1.2, 1e-5, True, True, True, True)
            yield f"sid_loss-gx-{tag}", lambda: op["sid_loss"](x, f, g, 1.2, 1e-5, False, False, False, True)
            yield f"fake_score_loss-{tag}", lambda: op["fake_score_loss"](x, f, sigma, 0.5, True)
            yield f"rowscale-{tag}", lambda: op["rowscale"](rows, rows, g, -1.0, dtype)
            yield f"rowscale-stride0-{tag}", lambda: op["rowscale"](torch.ones(()).expand(n), rows, g, 1.0, dtype)
            for kind in (0, 1, 2):
                yield f"distance-k{kind}-{tag}", lambda: op["distance"](x, f, kind, 0.01)
            yield f"distance_bwd-{tag}", lambda: op["distance_bwd"](rows, rows, x, f, 0, dtype, torch.float32)
            yield f"distance_bwd-l1-a-{tag}", lambda: op["distance_bwd"](torch.ones(()).expand(n), rows, x, f, 1, dtype,
                                                                          None)


def _resource_usage(cuobjdump: str, cubin: bytes) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", out)}


def _use_gpu_launch_config() -> None:
    """Make every launcher pick its block as for CUDA tensors on an H100 (the tensors here are on the CPU)."""
    from sidkernels.kernels import _common, distance, fake_score_loss, noise, precond, rowscale, sid_loss

    cpu_rule = _common.launch_config
    _common._sm_count = lambda index: H100_SMS

    def gpu_launch_config(n, d, device, block=None):
        return cpu_rule(n, d, torch.device("cuda", 0), block)

    for module in (distance, fake_score_loss, noise, precond, rowscale, sid_loss):
        module.launch_config = gpu_launch_config


def main(arch: int) -> None:
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"
    driver.set_active(CompileOnlyDriver(arch))
    _use_gpu_launch_config()
    launched: list[tuple[str, int | None, object]] = []
    compile_and_launch = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = compile_and_launch(self, *args, grid=grid, warmup=True, **kwargs)
        launched.append((self.fn.__name__, kwargs.get("BLOCK"), kernel))
        return kernel

    JITFunction.run = compile_only
    cuobjdump = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
    report = {"arch": arch, "triton": triton.__version__, "cases": {}}
    for case, thunk in _cases():
        launched.clear()
        try:
            thunk()
        except Exception as exc:  # a lowering error is the finding: report it, go on with the others
            report["cases"][case] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        kernels = []
        for name, block, kernel in launched:
            ptx = kernel.asm["ptx"]
            kernels.append({"kernel": name, "block": block, "num_warps": kernel.metadata.num_warps,
                            "loads": sorted(set(re.findall(r"\bld\.global[\w.]*", ptx))),
                            "stores": sorted(set(re.findall(r"\bst\.global[\w.]*", ptx))),
                            **_resource_usage(cuobjdump, kernel.asm["cubin"])})
        report["cases"][case] = {"kernels": kernels}
    print(json.dumps(report))


if __name__ == "__main__":
    main(int(sys.argv[1]))
