"""CPU CI of the CUDA C++ backend (no GPU needed; deselect with ``-m "not cuda_build"``).

The split build of KERNELS.md 5, from scratch into a temporary directory (nothing cached across runs):
every ``csrc/*.cu`` is compiled by nvcc for sm_80 and sm_90 (with torch's extension flags, warnings as
errors, and ptxas's resource report: no kernel may spill), the host-only binding is compiled against the
installed torch and linked with the kernels and the static CUDA runtime into one library.  A fresh interpreter (``library_probe.py``) then loads it and reports
the ops' schemas and how fake CUDA tensors and meta-tensor autograd flow through them.
"""
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from sidkernels import cuda_ext
from sidkernels.ops import SPECS
from tests.ops.test_opcheck import _cases

pytestmark = pytest.mark.cuda_build

ROOT = Path(__file__).resolve().parents[2]
GENCODE = ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90"]
# the flags torch.utils.cpp_extension gives nvcc in the just-in-time build, so that build compiles too
NVCC_FLAGS = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--Werror", "all-warnings",
              *cpp_extension.COMMON_NVCC_FLAGS, *GENCODE]
CASES = list(_cases("cpu"))


def _run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc.returncode, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Compile the kernels and the binding in parallel, then link; returns the per-step results."""
    cuda_home = cuda_ext.find_cuda_home()
    if cuda_home is None:
        pytest.skip("no CUDA toolkit (nvcc + headers): set CUDA_HOME or put nvcc on PATH to build csrc/")
    out = tmp_path_factory.mktemp("csrc_build")
    torch_lib = Path(cpp_extension.library_paths()[0])
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    binding = [os.environ.get("CXX", "c++"), "-O2", "-std=c++20", "-fPIC", "-Wall", "-Werror", abi,
               *(f"-isystem{p}" for p in cpp_extension.include_paths()), f"-I{cuda_home / 'include'}",
               "-c", str(cuda_ext.CSRC / cuda_ext.BINDING_SOURCE), "-o", str(out / "binding.o")]
    jobs = {name: [str(cuda_home / "bin" / "nvcc"), *NVCC_FLAGS, "--resource-usage", "-c", str(cuda_ext.CSRC / name),
                   "-o", str(out / f"{name}.o")] for name in cuda_ext.KERNEL_SOURCES}
    jobs[cuda_ext.BINDING_SOURCE] = binding
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(_run, jobs.values())))
    library = out / "libsidkernels_cuda.so"
    if all(code == 0 for code, _ in results.values()):
        lib_dir = cuda_home / ("lib64" if (cuda_home / "lib64").exists() else "lib")
        results["link"] = _run([os.environ.get("CXX", "c++"), "-shared", "-o", str(library), str(out / "binding.o"),
                                *(str(out / f"{name}.o") for name in cuda_ext.KERNEL_SOURCES),
                                f"-L{torch_lib}", "-Wl,--no-as-needed", "-lc10", "-ltorch_cpu", "-ltorch",
                                f"-L{lib_dir}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"])
    return results, library


@pytest.fixture(scope="module")
def library(build):
    results, library = build
    if results.get("link", (1,))[0] != 0:
        pytest.fail("the library was not built: see test_binding_builds_and_links")
    return library


@pytest.fixture(scope="module")
def probe(library):
    code, log = _run([sys.executable, "-m", "tests.csrc.library_probe", str(library)], cwd=ROOT)
    assert code == 0, log
    return json.loads(log.strip().splitlines()[-1])


@pytest.mark.parametrize("source", cuda_ext.KERNEL_SOURCES)
def test_kernel_compiles_for_sm80_and_sm90(build, source):
    code, log = build[0][source]
    assert code == 0, log


@pytest.mark.parametrize("source", cuda_ext.KERNEL_SOURCES)
def test_kernels_neither_spill_nor_use_a_stack(build, source):
    """ptxas's resource report (sm_80 and sm_90): every kernel keeps its state in registers."""
    code, log = build[0][source]
    assert code == 0, log
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert len(frames) >= 2 * 2  # two instantiations per kernel, two architectures
    assert all(numbers == ("0", "0", "0") for numbers in frames), log


def test_binding_builds_and_links(build):
    results, library = build
    for step in (cuda_ext.BINDING_SOURCE, "link"):
        assert step in results, f"{step} did not run (an earlier step failed)"
        assert results[step][0] == 0, results[step][1]
    assert library.is_file()


def test_stream_getter_is_a_weak_import(library):
    """The library loads on a CPU torch (weak import) and keeps libtorch, which on a CUDA torch brings
    libtorch_cuda, the home of the stream getter (see csrc/binding.cpp)."""
    code, symbols = _run(["nm", "-D", str(library)])
    if code != 0:
        pytest.skip("nm is not available")
    assert any(line.split()[-2:] == ["w", "aoti_torch_get_current_cuda_stream"] for line in symbols.splitlines())
    code, dynamic = _run(["readelf", "-d", str(library)])
    if code == 0:
        assert "[libtorch.so]" in dynamic


def test_importing_sidkernels_builds_and_loads_nothing(probe):
    assert probe["loaded_at_import"] is False


@pytest.mark.parametrize("name", list(SPECS))
def test_schema_equals_the_triton_schema(probe, name):
    cuda, expected = probe["schemas"][name]
    assert cuda == expected


@pytest.mark.parametrize("case", CASES)
def test_fake_cuda_tensors_flow_through(probe, case):
    outputs = probe["fake"][case]
    assert outputs["cuda"] == outputs["triton"]
    assert all(meta[3] == "cuda:0" for meta in outputs["cuda"])


@pytest.mark.parametrize("case", CASES)
def test_autograd_calls_the_cuda_backward_ops(probe, case):
    cuda, triton = probe["autograd"][case]["cuda"], probe["autograd"][case]["triton"]
    assert cuda["grads"] == triton["grads"]
    assert cuda["ops"] == [op.replace("_triton", "_cuda") for op in triton["ops"]]
    assert all(op.endswith("_cuda") for op in cuda["ops"])
