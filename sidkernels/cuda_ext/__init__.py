"""Loader of the CUDA C++ backend: the kernels of ``csrc/`` implementing the ``sidkernels::NAME_cuda`` ops.

The ops (schemas, fakes, autograd) are defined in Python when sidkernels is imported
(:mod:`sidkernels.ops._registry`); the C++ library only implements them, under the CUDA dispatch key, so
loading it is all there is to do.  Nothing is built or loaded at import.  On first use (``backend="cuda"``
calls :func:`require`) the library comes from, in this order:

1. the ahead-of-time build ``sidkernels/_C*.so`` made by
   ``SIDKERNELS_BUILD_CUDA=1 pip install --no-build-isolation -e .`` (see ``setup.py``);
2. a just-in-time build of ``csrc/`` (:func:`sidkernels.cuda_ext.build.jit_build`: ninja + nvcc, for
   ``TORCH_CUDA_ARCH_LIST`` or the visible GPU), cached under ``TORCH_EXTENSIONS_DIR`` (default
   ``~/.cache/torch_extensions``).  It needs a CUDA build of torch, nvcc and ninja.
"""
from __future__ import annotations

import importlib.util
import os
import threading

import torch

from sidkernels.cuda_ext import build

_lock = threading.Lock()
_library: str | None = None        # path of the loaded library
_device_type = "cuda"              # the device type of the tensors its kernels take
_build_error: str | None = None    # why the JIT build failed (not retried in this process)


def _aot_library() -> str | None:
    spec = importlib.util.find_spec(build.AOT_MODULE)
    return spec.origin if spec is not None and spec.origin else None


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
                "install a CUDA torch")
    if not build.sources():
        return f"the CUDA sources are not at {build.CSRC} (install sidkernels from a source checkout with pip install -e)"
    if build.find_cuda_home() is None:
        return "the CUDA toolkit (nvcc and headers) was not found: set CUDA_HOME or put nvcc on PATH"
    from torch.utils.cpp_extension import is_ninja_available
    if not is_ninja_available():
        return "ninja is not installed (pip install ninja, or the [cuda] extra)"
    return None


def available() -> bool:
    """True when the CUDA backend is loaded or can be loaded (building it if needed); builds nothing."""
    return unavailable_reason() is None


def load_library(path: str, *, device_type: str = "cuda") -> str:
    """Load a built extension library whose kernels take tensors on ``device_type`` (``"cuda"``; the CPU
    test build of ``tests/cuda_ext/host_emulation`` registers them for ``"cpu"``)."""
    global _library, _device_type
    torch.ops.load_library(path)
    _library, _device_type = path, device_type
    return path


def is_loaded() -> bool:
    """True when the ``*_cuda`` ops have kernels in this process."""
    return _library is not None


def device_type() -> str:
    """The device type of the tensors the loaded kernels take."""
    return _device_type


def load() -> str:
    """Load the CUDA backend (building it just in time if needed) and return the library's path."""
    global _build_error, _library
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
            _library = build.jit_build(verbose=os.environ.get("SIDKERNELS_VERBOSE_BUILD", "0") == "1")
        except Exception as exc:  # compiler errors arrive as RuntimeError / CalledProcessError / OSError
            _build_error = f"{type(exc).__name__}: {exc}"
            raise RuntimeError(f"backend='cuda' is unavailable: building the extension from {build.CSRC} failed "
                               f"(set SIDKERNELS_VERBOSE_BUILD=1 for the full compiler output): {exc}") from exc
        return _library


def require() -> None:
    """Make sure the CUDA ops have kernels; raise a RuntimeError saying why when they cannot."""
    if _library is not None:
        return
    if torch.compiler.is_compiling():
        raise RuntimeError("backend='cuda' is not loaded yet: call sidkernels.cuda_ext.require() (or run the op "
                           "once eagerly) before torch.compile traces it")
    load()
