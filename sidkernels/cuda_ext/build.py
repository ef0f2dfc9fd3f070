"""The one build recipe of the CUDA C++ extension: its sources, flags and target architectures.

Used by every build of ``csrc/``: the just-in-time build of :mod:`sidkernels.cuda_ext`, the ahead-of-time build
of ``setup.py`` (``SIDKERNELS_BUILD_CUDA=1``), the CPU CI's compile checks (``tests/cuda_ext``) and its host
emulation (``tests/cuda_ext/host_emulation``).  This module imports nothing from sidkernels, so ``setup.py``
can load it from its file before the package's dependencies are importable.

Layout of ``csrc/``: per op ``NAME.cu`` (kernels and their launcher: no torch header, so nvcc compiles them
quickly and for any torch) and ``bindings/NAME.cpp`` (the host-only binding: argument checks, output allocation, the
launch on torch's current stream, and the ``TORCH_LIBRARY_IMPL`` registration of ``sidkernels::NAME*_cuda``,
whose schemas are defined in Python).  Shared headers: ``abi.h`` (generated from ``sidkernels/_abi.py``),
``buffers.h`` (the C types between bindings and launchers), ``device.cuh`` (device helpers), ``binding.h``
(host helpers) and ``target.h`` (the one place where the GPU build and the CPU test build differ).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CSRC = Path(__file__).resolve().parents[2] / "csrc"
JIT_NAME = "sidkernels_cuda"
AOT_MODULE = "sidkernels._C"
ARCHS_ENV = "SIDKERNELS_CUDA_ARCHS"
DEFAULT_ARCHS = "80;90"                      # A100 and H100/H200 machine code; compute_90 PTX for newer GPUs
KERNEL_STD = "-std=c++17"                    # the kernels include no torch header
BINDING_STD = "-std=c++20"                   # torch >= 2.14's headers need C++20; earlier ones accept it
NVCC_FLAGS = ("-O3", KERNEL_STD)             # kernels
CXX_FLAGS = ("-O2", BINDING_STD)             # bindings
WARNINGS_AS_ERRORS = {"nvcc": ("--Werror", "all-warnings"), "cxx": ("-Wall", "-Werror")}


def kernel_sources() -> list[Path]:
    """Every ``csrc/*.cu`` (one per op, plus shared ones), sorted."""
    return sorted(CSRC.glob("*.cu"))


def binding_sources() -> list[Path]:
    """Every ``csrc/bindings/*.cpp`` (one per op), sorted."""
    return sorted((CSRC / "bindings").glob("*.cpp"))


def sources() -> list[Path]:
    return binding_sources() + kernel_sources()


def archs(value: str | None = None) -> list[str]:
    """Target architectures: ``value``, else ``$SIDKERNELS_CUDA_ARCHS``, else 80 and 90 (``;`` or ``,`` separated)."""
    text = value or os.environ.get(ARCHS_ENV) or DEFAULT_ARCHS
    codes = [a.strip().replace(".", "") for a in text.replace(",", ";").split(";") if a.strip()]
    if not codes or not all(c.isdigit() for c in codes):
        raise ValueError(f"{ARCHS_ENV} must list compute capabilities like '80;90', got {text!r}")
    return codes


def gencode(codes: list[str]) -> list[str]:
    """nvcc flags: machine code for each architecture and PTX of the newest (JIT-compiled by newer drivers)."""
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in codes]
    return flags + [f"-gencode=arch=compute_{codes[-1]},code=compute_{codes[-1]}"]


def torch_arch_list(codes: list[str]) -> str:
    """The same targets as torch's ``TORCH_CUDA_ARCH_LIST`` (used by the just-in-time build)."""
    return ";".join(f"{a[:-1]}.{a[-1]}" for a in codes[:-1]) + f";{codes[-1][:-1]}.{codes[-1][-1]}+PTX"


def find_cuda_home() -> Path | None:
    """The CUDA toolkit (nvcc and headers): $CUDA_HOME / $CUDA_PATH, the one of the nvcc on PATH, or
    /usr/local/cuda; None when there is none."""
    nvcc = shutil.which("nvcc")
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  str(Path(nvcc).resolve().parent.parent) if nvcc else None, "/usr/local/cuda"]
    for home in filter(None, candidates):
        if (Path(home) / "bin" / "nvcc").exists() and (Path(home) / "include" / "cuda_runtime_api.h").exists():
            return Path(home)
    return None


def jit_build(verbose: bool = False) -> str:
    """Build ``csrc/`` with torch's just-in-time extension builder (ninja + nvcc, cached under
    ``TORCH_EXTENSIONS_DIR``, rebuilt only when a source changes) and load it; returns the library's path.

    Targets: ``TORCH_CUDA_ARCH_LIST`` when set (else torch's choice: the visible GPU's architecture).
    """
    from torch.utils import cpp_extension

    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise RuntimeError("the CUDA toolkit (nvcc and headers) was not found: set CUDA_HOME or put nvcc on PATH")
    lib_dir = cuda_home / ("lib64" if (cuda_home / "lib64").exists() else "lib")
    # The toolkit's paths are passed explicitly (torch's own guess of CUDA_HOME can be a wrapper's prefix).
    path = cpp_extension.load(name=JIT_NAME, sources=[str(s) for s in sources()], extra_cflags=list(CXX_FLAGS),
                              extra_cuda_cflags=list(NVCC_FLAGS), extra_include_paths=[str(CSRC),
                                                                                    str(cuda_home / "include")],
                              extra_ldflags=[f"-L{lib_dir}"], is_python_module=False, with_cuda=True,
                              verbose=verbose)
    return path if isinstance(path, str) else JIT_NAME


def setup_extension(archs_value: str | None = None) -> dict:
    """``setup()`` keywords of the ahead-of-time build ``sidkernels._C`` (needs a CUDA build of torch)."""
    import torch
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    if torch.version.cuda is None:
        raise RuntimeError(f"SIDKERNELS_BUILD_CUDA=1 needs a CUDA build of torch; torch {torch.__version__} is not")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise RuntimeError("SIDKERNELS_BUILD_CUDA=1 needs the CUDA toolkit (nvcc and headers): set CUDA_HOME")
    root = CSRC.parent
    extension = CUDAExtension(
        AOT_MODULE, [str(s.relative_to(root)) for s in sources()], include_dirs=[str(CSRC), str(cuda_home / "include")],
        library_dirs=[str(cuda_home / ("lib64" if (cuda_home / "lib64").exists() else "lib"))],
        extra_compile_args={"cxx": list(CXX_FLAGS), "nvcc": [*NVCC_FLAGS, *gencode(archs(archs_value))]})
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}
