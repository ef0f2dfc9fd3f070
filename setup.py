"""Build script.  The package is pure Python; the optional CUDA C++ extension is built on first use.

``SIDKERNELS_BUILD_CUDA=1 pip install --no-build-isolation -e .`` builds it ahead of time instead, as
``sidkernels/_C*.so`` (found by :mod:`sidkernels.cuda_ext` before any just-in-time build), with the recipe of
``sidkernels/cuda_ext/build.py`` (sources, flags; targets ``SIDKERNELS_CUDA_ARCHS``, default ``80;90``: sm_80
and sm_90 machine code plus compute_90 PTX for newer GPUs).  It needs a CUDA build of torch, already installed
(hence --no-build-isolation), and the CUDA toolkit.
"""
import importlib.util
import os
from pathlib import Path

from setuptools import setup


def _recipe():
    """sidkernels/cuda_ext/build.py, loaded from its file: importing the package would need its dependencies."""
    spec = importlib.util.spec_from_file_location("_sidkernels_build", Path(__file__).parent / "sidkernels" /
                                                  "cuda_ext" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup(**(_recipe().setup_extension() if os.environ.get("SIDKERNELS_BUILD_CUDA") == "1" else {}))
