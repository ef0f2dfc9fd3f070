"""Compiles every Triton kernel exactly as the ops launch it on an H100, for a real GPU target, on a machine
without a GPU; run by test_lowering.py in a fresh interpreter without TRITON_INTERPRET.  Prints one JSON report.

    python -m tests.ops.lowering_probe ARCH      # 80 (A100) or 90 (H100/H200)

Every kernel op's plan (:class:`sidkernels.ops.KernelOp`) builds the launches of one call, with an H100's
132 SMs for the launch geometry, on CPU tensors standing in for GPU ones; each launch is compiled with
Triton's public ``JITFunction.warmup`` (compile, never launch) through a compile-only driver that answers
"sm_ARCH" for the current target, so Triton specialises the arguments as on the GPU (16-byte aligned
pointers, sizes divisible by 16, the value 1).  The cases are every op's kernel cases on the benchmark
shapes and on the variants the GPU suite launches: fp32, bf16, fp16 and fp64 inputs, a batch of one, one
element per sample, odd sizes and misaligned slices.  For each compiled kernel the report holds the global
load/store forms in its PTX, its instruction count, and the registers, stack and local (spill) memory of
its cubin (``cuobjdump -res-usage`` from the Triton wheel).
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
from triton.runtime import driver

from sidkernels._compile_only import CompileOnlyDriver

# the kernel benchmark's shapes (every D divisible by 16), and the variants of the GPU suite
SHAPES = {"cifar": (256, 3, 32, 32), "64px": (128, 3, 64, 64), "latent": (32, 4, 128, 128), "odd": (3, 3, 37, 37),
          "n1": (1, 3, 8, 8), "d1": (5, 1, 1, 1)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
# dtypes per shape: the benchmark shapes in their dtypes, every dtype on the odd shape (and its misaligned
# slices in fp32 and bf16), fp32 for a batch of one and one element per sample
SHAPE_DTYPES = {"cifar": ("fp32", "bf16"), "64px": ("fp32", "bf16"), "latent": ("fp32", "bf16"),
                "odd": tuple(DTYPES), "n1": ("fp32",), "d1": ("fp32",)}
MISALIGNED = {"odd": ("fp32", "bf16")}
H100_SMS = 132


def _misaligned(args):
    """The same call with every sample-major tensor argument moved to a slice starting 4 bytes in."""
    def shift(t):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            return t
        base = torch.empty(t.numel() + 8, dtype=t.dtype)
        view = base[1:1 + t.numel()].view(t.shape)
        view.copy_(t)
        return view
    return tuple(shift(a) for a in args)


def cases():
    """(name, kernel op, args) for every op's kernel cases on every probe shape and dtype."""
    from sidkernels.ops import OPS

    for shape_name, shape in SHAPES.items():
        for dtype_name in SHAPE_DTYPES[shape_name]:
            for op in OPS.values():
                for case, (kernel, args) in op.kernel_cases(shape, DTYPES[dtype_name], torch.device("cpu")).items():
                    tag = f"{op.name}.{case}-{shape_name}-{dtype_name}"
                    yield tag, kernel, args
                    if dtype_name in MISALIGNED.get(shape_name, ()):
                        yield tag + "-misaligned", kernel, _misaligned(args)


def batch_variants():
    """(name, kernel op, args) of every op's kernel cases at batch 1 and batch 7 of one sample shape: the
    compiled kernels must be the same (the batch size and chunk count are not specialised)."""
    from sidkernels.ops import OPS

    for n in (1, 7):
        for op in OPS.values():
            for case, (kernel, args) in op.kernel_cases((n, 3, 8, 8), torch.float32, torch.device("cpu")).items():
                yield f"{op.name}.{case}", n, kernel, args


def _resource_usage(cuobjdump: str, cubin: bytes) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", out)}


def _ptx_instructions(ptx: str) -> int:
    """Instructions in the PTX body (lines ending with ';' inside the entry, directives excluded)."""
    body = ptx[ptx.index(".entry"):]
    return sum(1 for line in body.splitlines() if line.strip().endswith(";") and not line.strip().startswith("."))


def main(arch: int) -> None:
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"
    driver.set_active(CompileOnlyDriver(arch))
    cuobjdump = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
    report = {"arch": arch, "triton": triton.__version__, "cases": {}}
    for case, kernel, args in cases():
        try:
            _, launches = kernel.plan(H100_SMS, *[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
            compiled = [(launch, launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.kwargs))
                        for launch in launches]
        except Exception as exc:  # a lowering error is the finding: report it, go on with the others
            report["cases"][case] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            continue
        report["cases"][case] = {"kernels": [
            {"kernel": launch.kernel.fn.__name__, "block": launch.kwargs.get("BLOCK"), "grid": list(launch.grid),
             "num_warps": binary.metadata.num_warps, "ptx_instructions": _ptx_instructions(binary.asm["ptx"]),
             "loads": sorted(set(re.findall(r"\bld\.global[\w.]*", binary.asm["ptx"]))),
             "stores": sorted(set(re.findall(r"\bst\.global[\w.]*", binary.asm["ptx"]))),
             **_resource_usage(cuobjdump, binary.asm["cubin"])}
            for launch, binary in compiled]}
    report["batch_hashes"] = {}
    for case, n, kernel, args in batch_variants():
        _, launches = kernel.plan(H100_SMS, *[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
        hashes = [launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.kwargs).hash for launch in launches]
        report["batch_hashes"].setdefault(case, {})[n] = hashes
    print(json.dumps(report))


if __name__ == "__main__":
    main(int(sys.argv[1]))
