"""CPU CI of the CUDA C++ kernels' build (no GPU, no CUDA torch needed; deselect with ``-m "not cuda_build"``).

Every ``csrc/*.cu`` is compiled by nvcc with the build recipe's flags (sidkernels/cuda_ext/build.py) plus those
torch's extension builder adds, warnings as errors, for sm_80 and sm_90, with ptxas's resource report: no
kernel may spill or use a stack.  The generated ABI header must be the one sidkernels/_abi.py gives.  The
bindings need a CUDA build of torch and are built in test_cuda_torch_build.py.
"""
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from torch.utils import cpp_extension

from sidkernels.cuda_ext import build
from sidkernels.cuda_ext.abi_header import HEADER, abi_header

pytestmark = pytest.mark.cuda_build

NVCC_FLAGS = [*build.NVCC_FLAGS, "-Xcompiler", "-fPIC", *build.WARNINGS_AS_ERRORS["nvcc"],
              *cpp_extension.COMMON_NVCC_FLAGS, *build.gencode(["80", "90"])]


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every kernel source compiled in parallel: {source name: (return code, log)}."""
    cuda_home = build.find_cuda_home()
    if cuda_home is None:
        pytest.skip("no CUDA toolkit (nvcc + headers): set CUDA_HOME or put nvcc on PATH to build csrc/")
    out = tmp_path_factory.mktemp("nvcc")
    jobs = {source.name: [str(cuda_home / "bin" / "nvcc"), *NVCC_FLAGS, "--resource-usage", "-c", str(source),
                          "-o", str(out / f"{source.name}.o")] for source in build.kernel_sources()}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(_run, jobs.values())))


def test_abi_header_is_generated_from_the_python_abi():
    """csrc/abi.h is what `python -m sidkernels.cuda_ext.abi_header` writes from sidkernels/_abi.py."""
    assert HEADER.read_text() == abi_header()


@pytest.mark.parametrize("source", [s.name for s in build.kernel_sources()])
def test_kernel_compiles_for_sm80_and_sm90(compiled, source):
    code, log = compiled[source]
    assert code == 0, log


@pytest.mark.parametrize("source", [s.name for s in build.kernel_sources()])
def test_kernels_neither_spill_nor_use_a_stack(compiled, source):
    """ptxas's resource report (sm_80 and sm_90): every kernel keeps its state in registers."""
    code, log = compiled[source]
    assert code == 0, log
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert len(frames) >= 2 * 2  # two instantiations per kernel, two architectures
    assert all(numbers == ("0", "0", "0") for numbers in frames), log


def test_every_op_source_has_its_binding():
    kernels = {s.stem for s in build.kernel_sources()}
    bindings = {s.stem for s in build.binding_sources()}
    assert kernels == bindings and kernels


def test_arch_list_parsing():
    assert build.archs("80;90") == ["80", "90"] and build.archs("8.0,9.0") == ["80", "90"]
    assert build.gencode(["80", "90"])[-1] == "-gencode=arch=compute_90,code=compute_90"
    assert build.torch_arch_list(["80", "90"]) == "8.0;9.0+PTX"
    with pytest.raises(ValueError, match="SIDKERNELS_CUDA_ARCHS must list compute capabilities"):
        build.archs("sm_90")
