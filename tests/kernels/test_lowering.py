"""Every Triton kernel lowers to PTX and a cubin for sm_80 and sm_90 exactly as the ops launch it on a GPU
(no GPU needed: lowering_probe.py compiles through a compile-only driver in a fresh interpreter, since this
one interprets Triton).  The interpreter, which runs the kernels in CI, accepts programs the compiler may
reject; this catches those, and checks the code generated for the benchmark shapes: no register spills,
and 16-byte global loads and stores (the memory-bound kernels' bandwidth depends on them).
"""
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sidkernels.kernels
from tests.kernels.lowering_probe import SHAPES

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK_SHAPES = [name for name in SHAPES if name != "odd"]
WRITES_ONLY_PER_SAMPLE = {"_distance_fwd_kernel"}  # reads samples, stores one value per sample (or chunk)


@pytest.fixture(scope="module", params=[80, 90], ids=lambda arch: f"sm_{arch}")
def report(request, tmp_path_factory):
    arch = request.param
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path_factory.mktemp(f"triton-{arch}")))
    proc = subprocess.run([sys.executable, "-m", "tests.kernels.lowering_probe", str(arch)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _kernels(report, shapes=None):
    for case, result in report["cases"].items():
        if shapes is None or case.split("-")[-2] in shapes:
            for kernel in result.get("kernels", []):
                yield case, kernel


def test_every_case_lowers(report):
    errors = {case: result["error"] for case, result in report["cases"].items() if "error" in result}
    assert not errors, json.dumps(errors, indent=1)[:6000]
    assert len(report["cases"]) >= 100


def test_every_kernel_of_the_library_is_compiled(report):
    defined = set()
    for info in pkgutil.iter_modules(sidkernels.kernels.__path__):
        module = importlib.import_module(f"sidkernels.kernels.{info.name}")
        defined |= {name for name in vars(module) if name.startswith("_") and name.endswith("_kernel")}
    assert defined and defined == {kernel["kernel"] for _, kernel in _kernels(report)}


def test_no_register_spills(report):
    spilled = [(case, k["kernel"], k["LOCAL"]) for case, k in _kernels(report) if k["LOCAL"] != 0]
    assert not spilled


@pytest.mark.parametrize("shape", BENCHMARK_SHAPES)
def test_benchmark_shapes_move_16_bytes_per_access(report, shape):
    """Row kernels on the benchmark shapes (every sample 16-byte aligned) load and store with 128-bit
    vectors, and never touch bf16 data one element at a time."""
    checked = 0
    for case, kernel in _kernels(report, shapes={shape}):
        if "finalize" in kernel["kernel"]:
            continue  # reads per-chunk partials, not samples
        assert "ld.global.v4.b32" in kernel["loads"], (case, kernel)
        if kernel["kernel"] not in WRITES_ONLY_PER_SAMPLE:
            assert "st.global.v4.b32" in kernel["stores"], (case, kernel)
        if case.endswith("bfloat16"):
            assert not {"ld.global.b16", "st.global.b16"} & set(kernel["loads"] + kernel["stores"]), (case, kernel)
        checked += 1
    assert checked >= 20
