"""The user's GPU install path, built and loaded on a CPU machine: csrc/ against a CUDA build of torch.

On a GPU machine the extension is built against the CUDA torch's headers, either just in time by the loader
(``torch.utils.cpp_extension.load`` with ninja) or ahead of time by ``SIDKERNELS_BUILD_CUDA=1``'s setup.py.  CI
installs a CUDA build of torch into a second virtualenv and names its interpreter in
``$SIDKERNELS_CUDA_TORCH_PYTHON`` (see .ci/run); these tests build both ways in that interpreter for sm_80 and
sm_90, load the result there (no driver is needed to load) and check, through library_probe.py, that every
``*_cuda`` kernel op has its CUDA kernel, its autograd and its fake (fake CUDA tensors flow through it as
through the Triton variant), that the backward of a cuda variant dispatches the cuda backward ops, and that the
binding takes its stream from torch's CUDA stream API (it links libc10_cuda).
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from sidkernels.ops import kernel_ops

pytestmark = pytest.mark.cuda_build

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("SIDKERNELS_CUDA_TORCH_PYTHON")

if not PYTHON:
    pytest.skip("needs a CUDA build of torch in another interpreter: set SIDKERNELS_CUDA_TORCH_PYTHON (.ci/run "
                "installs torch==2.14.1 into .ci-cuda-venv for it)", allow_module_level=True)


def _env(tmp: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), TORCH_EXTENSIONS_DIR=str(tmp / "extensions"), MAX_JOBS="2",
                TORCH_CUDA_ARCH_LIST="8.0;9.0+PTX", SIDKERNELS_CUDA_ARCHS="80;90", TRITON_INTERPRET="1")


def _probe(what: str, tmp: Path) -> dict:
    proc = subprocess.run([PYTHON, "-m", "tests.cuda_ext.library_probe", what], cwd=ROOT, env=_env(tmp),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jit(tmp_path_factory):
    return _probe("jit", tmp_path_factory.mktemp("jit"))


@pytest.fixture(scope="module")
def aot(tmp_path_factory):
    """``SIDKERNELS_BUILD_CUDA=1 setup.py build_ext`` into a temporary folder, then the probe of its library."""
    tmp = tmp_path_factory.mktemp("aot")
    env = dict(_env(tmp), SIDKERNELS_BUILD_CUDA="1")
    proc = subprocess.run([PYTHON, "setup.py", "-q", "build_ext", "--build-lib", str(tmp / "lib"), "--build-temp",
                           str(tmp / "build")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    (library,) = (tmp / "lib" / "sidkernels").glob("_C*.so")
    return library, _probe(str(library), tmp)


def _check(report):
    assert report["torch_cuda"] is not None
    assert report["kernels_at_import"] == []  # importing sidkernels builds and loads nothing
    assert report["cuda_kernels"] == {name: True for name in kernel_ops()}
    assert report["autograd"] == {name: True for name, k in kernel_ops().items() if k.backward is not None}
    for case, outputs in report["fake"].items():
        assert outputs["cuda"] == outputs["triton"], case
        assert all(meta[3] == "cuda:0" for meta in outputs["cuda"]), case
    for case, backward in report["backward_ops"].items():
        assert all(op.endswith("_cuda") for op in backward["ops"]) and len(backward["ops"]) >= 1, case


def test_jit_build_loads_with_every_kernel(jit):
    _check(jit)


def test_ahead_of_time_build_loads_with_every_kernel(aot):
    _check(aot[1])


def test_binding_uses_torch_cuda_stream_api(aot):
    """The library needs libc10_cuda (c10::cuda::getCurrentCUDAStream), and has no weak stand-in symbol."""
    library, _ = aot
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True).stdout
    symbols = subprocess.run(["nm", "-D", str(library)], capture_output=True, text=True).stdout
    if not dynamic or not symbols:
        pytest.skip("readelf / nm are not available")
    assert "libc10_cuda.so" in dynamic
    assert "aoti_torch_get_current_cuda_stream" not in symbols
    assert "getCurrentCUDAStream" in symbols
