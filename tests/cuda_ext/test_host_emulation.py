"""The CUDA C++ kernels run on the CPU (no GPU needed; deselect with ``-m "not cuda_build"``).

tests/cuda_ext/host_emulation emulates the CUDA device model on the host (threads as fibers, barriers, warp shuffles,
launch limits); the kernels and the binding are built against it with ASan + UBSan (tests/cuda_ext/host_emulation/build.py).
Then the GPU suite test_cuda_ops.py runs unchanged on CPU tensors in a fresh interpreter: every op against the
references, opcheck of the ``*_cuda`` variants, NaN rows, layouts, misaligned inputs, multi-chunk reductions.
The probe kernels (emulation_probe.cu) check the emulation itself: the GPU's order of the block reduction, and
that a divergent barrier, a launch beyond the limits, an out-of-bounds read and a misaligned vector load are
reported rather than silently run.
"""
import json
import re
import subprocess
import sys

import pytest
import torch

from tests.cuda_ext.host_emulation import build as host_emulation
from tests.cuda_ext.emulation_probe import INVALID_CONFIGURATION, LAUNCH_FAILURE

pytestmark = pytest.mark.cuda_build

if host_emulation.sanitizer_runtime() is None:
    pytest.skip("the C++ compiler has no AddressSanitizer runtime (libasan)", allow_module_level=True)


def _built(results_and_library):
    results, library = results_and_library
    for step, (code, log) in results.items():
        assert code == 0, f"{step} failed:\n{log[-6000:]}"
    assert "link" in results and library.is_file()
    return library


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return _built(host_emulation.build(tmp_path_factory.mktemp("host_emulation")))


@pytest.fixture(scope="module")
def probe_library(tmp_path_factory):
    return _built(host_emulation.build_probe(tmp_path_factory.mktemp("emulation_probe")))


def _probe(library, check):
    proc = subprocess.run([sys.executable, "-m", "tests.cuda_ext.emulation_probe", str(library), check],
                          cwd=host_emulation.ROOT, env=host_emulation.sanitizer_env(library), capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else None), proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: test_cuda_ops.py runs on the real kernels "
                                                     "(and Triton is not interpreted there)")
def test_cuda_op_suite_passes_on_the_emulated_kernels(library):
    proc = host_emulation.run_suite(library)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]
    passed = re.search(r"(\d+) passed", log)
    assert passed and int(passed.group(1)) >= 200, log[-3000:]  # the suite ran, not only skipped


def test_block_sum_has_the_gpu_order(probe_library):
    code, report, stderr = _probe(probe_library, "block_sum")
    assert code == 0, stderr
    for threads, result in report.items():
        assert result == {"err": 0, "bitwise": [True, True]}, threads


@pytest.mark.parametrize("check", ["divergent_barrier", "partial_warp"])
def test_a_barrier_some_threads_never_reach_fails_the_launch(probe_library, check):
    code, report, stderr = _probe(probe_library, check)
    assert code == 0, stderr
    assert report["err"] == LAUNCH_FAILURE
    assert "deadlock" in stderr
    assert report.get("after", 0) == 0  # the error is read once; the next launch is clean


def test_launch_limits(probe_library):
    code, report, stderr = _probe(probe_library, "launch_limits")
    assert code == 0, stderr
    assert report == {"1024 threads": 0, "1025 threads": INVALID_CONFIGURATION, "grid.y 65535": 0,
                      "grid.y 65536": INVALID_CONFIGURATION, "empty grid": INVALID_CONFIGURATION}


def test_out_of_bounds_read_is_caught(probe_library):
    code, _, stderr = _probe(probe_library, "read_past_end")
    assert code != 0 and "heap-buffer-overflow" in stderr, stderr[-3000:]


def test_misaligned_vector_load_is_caught(probe_library):
    code, report, stderr = _probe(probe_library, "aligned_vector_load")
    assert code == 0 and report == {"err": 0}, stderr
    code, _, stderr = _probe(probe_library, "misaligned_vector_load")
    assert code != 0 and "misaligned address" in stderr and "uint4" in stderr, stderr[-3000:]
