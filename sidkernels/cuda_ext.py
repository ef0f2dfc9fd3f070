"""Loader of the CUDA C++ backend: the ``sidkernels::NAME_cuda`` ops built from ``csrc/``.

The ops are defined and implemented in C++ (``csrc/binding.cpp``: ``TORCH_LIBRARY_FRAGMENT`` with the
schemas of the Triton ops, kernels under ``TORCH_LIBRARY_IMPL(sidkernels, CUDA, ...)``); their fakes and
autograd are the shared Python ones of :data:`sidkernels.ops.SPECS`, attached by :func:`load_library`.

Nothing is built or loaded when sidkernels is imported.  On first use (``backend="cuda"`` calls
:func:`require`) the library comes from, in this order:

1. the ahead-of-time build ``sidkernels/_C*.so`` made by
   ``SIDKERNELS_BUILD_CUDA=1 pip install --no-build-isolation -e .`` (see ``setup.py``);
2. a just-in-time build of ``csrc/`` with :func:`torch.utils.cpp_extension.load` (ninja + nvcc, for the
   visible GPU's architecture or ``TORCH_CUDA_ARCH_LIST``), cached under ``TORCH_EXTENSIONS_DIR``
   (default ``~/.cache/torch_extensions``) and rebuilt only when a source changes.  It needs a CUDA build
   of torch, nvcc and ninja.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent.parent / "csrc"
KERNEL_SOURCES = ("noise.cu", "precond.cu", "losses.cu", "distance.cu")
BINDING_SOURCE = "binding.cpp"
AOT_MODULE = "sidkernels._C"
JIT_NAME = "sidkernels_cuda"

_lock = threading.Lock()
_library: str | None = None       # path of the loaded library
_host_emulation = False           # the loaded library is the host emulation build (CPU tensors)
_build_error: str | None = None   # why the JIT build failed (not retried in this process)


def _aot_library() -> str | None:
    spec = importlib.util.find_spec(AOT_MODULE)
    return spec.origin if spec is not None and spec.origin else None


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


def unavailable_reason() -> str | None:
    """Why ``backend="cuda"`` cannot be used in this process, or None when it can (possibly after a build)."""
    if _library is not None:
        return None
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    if _build_error is not None:
        return f"building the extension failed earlier in this process: {_build_error}"
    if _aot_library() is not None:
        return None
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is not a CUDA build, so the extension cannot be built just in time; "
                "install a CUDA torch, or build it ahead of time (SIDKERNELS_BUILD_CUDA=1, see setup.py)")
    if not all((CSRC / name).is_file() for name in (BINDING_SOURCE, *KERNEL_SOURCES)):
        return f"the CUDA sources are not at {CSRC} (install sidkernels from a source checkout with pip install -e)"
    if find_cuda_home() is None:
        return "the CUDA toolkit (nvcc and headers) was not found: set CUDA_HOME or put nvcc on PATH"
    from torch.utils.cpp_extension import is_ninja_available
    if not is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def available() -> bool:
    """True when the CUDA backend is loaded or can be loaded (building it if needed); builds nothing."""
    return unavailable_reason() is None


def _register() -> None:
    from sidkernels.ops import SPECS, register, registered_backends
    for name, spec in SPECS.items():
        if "cuda" not in registered_backends(name):
            register(name, "cuda", spec)


def load_library(path: str, *, host_emulation: bool = False) -> str:
    """Load a built extension library and attach the shared fakes and autograd to its ops.

    ``host_emulation``: the library is the CPU-CI build of ``csrc/host_emulation`` (tests/csrc/host_emulation.py),
    whose ``*_cuda`` ops run the same kernels on CPU tensors; ``backend="cuda"`` then takes CPU tensors.
    """
    global _library, _host_emulation
    torch.ops.load_library(path)
    _register()
    _library, _host_emulation = path, host_emulation
    return path


def is_loaded() -> bool:
    """True when the ``*_cuda`` ops are registered in this process."""
    return _library is not None


def is_host_emulation() -> bool:
    """True when the loaded library is the host emulation build (see :func:`load_library`)."""
    return _host_emulation


def _jit_build_and_load() -> str:
    """Build csrc/ with ninja (cached) and load it into the process; returns the library's path."""
    global _library
    from torch.utils import cpp_extension
    sources = [str(CSRC / BINDING_SOURCE)] + [str(CSRC / name) for name in KERNEL_SOURCES]
    cuda_home = find_cuda_home()
    lib_dir = cuda_home / ("lib64" if (cuda_home / "lib64").exists() else "lib")
    # The toolkit's paths are passed explicitly too (torch's own guess of CUDA_HOME can be a wrapper's prefix).
    # --no-as-needed keeps libtorch_cuda NEEDED although only a weak symbol refers to it (csrc/binding.cpp).
    path = cpp_extension.load(name=JIT_NAME, sources=sources, extra_cflags=["-O2"], extra_cuda_cflags=["-O3"],
                              extra_include_paths=[str(cuda_home / "include")],
                              extra_ldflags=["-Wl,--no-as-needed", f"-L{lib_dir}"],
                              is_python_module=False,
                              verbose=os.environ.get("SIDKERNELS_VERBOSE_BUILD", "0") == "1")
    _register()
    _library = path if isinstance(path, str) else JIT_NAME
    return _library


def load() -> str:
    """Load the CUDA backend (building it just in time if needed) and return the library's path."""
    global _build_error
    with _lock:
        if _library is not None:
            return _library
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"backend='cuda' is unavailable: {reason}")
        aot = _aot_library()
        if aot is not None:
            try:
                return load_library(aot)
            except (OSError, RuntimeError) as exc:
                raise RuntimeError(f"backend='cuda' is unavailable: the ahead-of-time build {aot} does not load "
                                   f"(built against another torch? rebuild it): {exc}") from exc
        try:
            return _jit_build_and_load()
        except Exception as exc:  # compiler errors arrive as RuntimeError / CalledProcessError / OSError
            _build_error = f"{type(exc).__name__}: {exc}"
            raise RuntimeError(f"backend='cuda' is unavailable: building the extension from {CSRC} failed "
                               f"(set SIDKERNELS_VERBOSE_BUILD=1 for the full compiler output): {exc}") from exc


def require() -> None:
    """Make sure the CUDA ops are registered; raise a RuntimeError saying why when they cannot be."""
    if _library is not None:
        return
    if torch.compiler.is_compiling():
        raise RuntimeError("backend='cuda' is not loaded yet: call sidkernels.cuda_ext.require() (or run the op "
                           "once eagerly) before torch.compile traces it")
    load()
