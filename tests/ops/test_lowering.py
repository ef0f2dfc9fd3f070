"""Every Triton kernel lowers to PTX and a cubin for sm_80 and sm_90 exactly as the ops launch it on a GPU
(no GPU needed: lowering_probe.py compiles each op's launch plans with Triton's compile-only warm-up in a fresh
interpreter, since this one interprets Triton).  The interpreter, which runs the kernels in CI, accepts
programs the compiler may reject; this catches those, every dtype and shape variant the GPU suite launches is
compiled here first, and the code generated for the benchmark shapes is checked: no register spills, 16-byte
global loads and stores (the memory-bound kernels' bandwidth depends on them), and one binary for any batch.
"""
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sidkernels.ops
from tests.ops.lowering_probe import SHAPES

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK_SHAPES = ("cifar", "64px", "latent")
WRITES_ONLY_PER_SAMPLE = {"_distance_fwd_kernel", "_sid_raw_fwd_kernel"}  # read samples, store per sample/chunk
NO_BIG_OUTPUT = ("fake_score_loss.no_grad",)  # cases whose forward writes no per-element tensor


@pytest.fixture(scope="module", params=[80, 90], ids=lambda arch: f"sm_{arch}")
def report(request, tmp_path_factory):
    arch = request.param
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path_factory.mktemp(f"triton-{arch}")))
    proc = subprocess.run([sys.executable, "-m", "tests.ops.lowering_probe", str(arch)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _kernels(report, shapes=None, dtypes=None):
    for case, result in report["cases"].items():
        _, shape, dtype, *variant = case.split("-")
        if (shapes is None or shape in shapes) and (dtypes is None or dtype in dtypes) and not variant:
            for kernel in result.get("kernels", []):
                yield case, kernel


def test_every_case_lowers(report):
    errors = {case: result["error"] for case, result in report["cases"].items() if "error" in result}
    assert not errors, json.dumps(errors, indent=1)[:6000]
    shapes = {case.split("-")[1] for case in report["cases"]}
    assert shapes == set(SHAPES) and len(report["cases"]) >= 300


def test_every_kernel_of_the_library_is_compiled(report):
    defined = set()
    for info in pkgutil.iter_modules(sidkernels.ops.__path__):
        if info.ispkg:
            module = importlib.import_module(f"sidkernels.ops.{info.name}.triton")
            defined |= {name for name in vars(module) if name.startswith("_") and name.endswith("_kernel")}
    assert defined and defined == {kernel["kernel"] for _, kernel in _kernels(report)}


def test_no_register_spills(report):
    spilled = [(case, k["kernel"], k["LOCAL"]) for case, result in report["cases"].items()
               for k in result.get("kernels", []) if k["LOCAL"] != 0]
    assert not spilled


def test_every_program_has_at_least_two_warps(report):
    one_warp = [(case, k["kernel"]) for case, k in _kernels(report) if "finalize" not in k["kernel"]
                and k["num_warps"] < 2]
    assert not one_warp


@pytest.mark.parametrize("shape", BENCHMARK_SHAPES)
def test_benchmark_shapes_move_16_bytes_per_access(report, shape):
    """Row kernels on the benchmark shapes (every sample 16-byte aligned) load and store with 128-bit
    vectors, and never touch bf16 data one element at a time."""
    checked = 0
    for case, kernel in _kernels(report, shapes={shape}):
        if "finalize" in kernel["kernel"]:
            continue  # reads per-chunk partials, not samples
        assert "ld.global.v4.b32" in kernel["loads"], (case, kernel)
        if kernel["kernel"] not in WRITES_ONLY_PER_SAMPLE and not case.startswith(NO_BIG_OUTPUT):
            assert "st.global.v4.b32" in kernel["stores"], (case, kernel)
        if case.endswith("bf16"):
            assert not {"ld.global.b16", "st.global.b16"} & set(kernel["loads"] + kernel["stores"]), (case, kernel)
        checked += 1
    assert checked >= 40


def test_a_batch_of_one_compiles_the_same_kernels(report):
    """The batch size and chunk count are not specialised: batch 1 and batch 7 launch the same binaries."""
    differ = {case: hashes for case, hashes in report["batch_hashes"].items() if hashes["1"] != hashes["7"]}
    assert not differ, differ
