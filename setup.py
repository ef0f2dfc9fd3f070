"""Build script.  The package is pure Python; the optional CUDA C++ extension is built on first use.

``SIDKERNELS_BUILD_CUDA=1 pip install --no-build-isolation -e .`` builds it ahead of time instead, as
``sidkernels/_C*.so`` (found by :mod:`sidkernels.cuda_ext` before any just-in-time build):

* each ``csrc/*.cu`` is compiled by nvcc with explicit targets (``SIDKERNELS_CUDA_ARCHS``, default
  ``80;90``: sm_80 and sm_90 machine code plus compute_90 PTX for newer GPUs);
* the host-only binding ``csrc/binding.cpp`` is compiled against the installed torch and linked with the
  kernel objects and the static CUDA runtime.

The binding uses no CUDA-only torch API, so this works against a CPU build of torch as well (the result
then loads but only runs on a CUDA build).  torch must already be installed, hence --no-build-isolation.
"""
import importlib.util
import os
import subprocess
from pathlib import Path

from setuptools import setup

CSRC = Path("csrc")


def _cuda_home() -> Path:
    """The CUDA toolkit, found by :func:`sidkernels.cuda_ext.find_cuda_home` (loaded from its file: importing
    the package would need its dependencies at build time)."""
    spec = importlib.util.spec_from_file_location("_sidkernels_cuda_ext", Path("sidkernels") / "cuda_ext.py")
    cuda_ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cuda_ext)
    home = cuda_ext.find_cuda_home()
    if home is None:
        raise RuntimeError("SIDKERNELS_BUILD_CUDA=1 needs the CUDA toolkit (nvcc and headers): set CUDA_HOME")
    return home


def _gencode(archs: str) -> list[str]:
    codes = [a.strip() for a in archs.replace(",", ";").split(";") if a.strip()]
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in codes]
    return flags + [f"-gencode=arch=compute_{codes[-1]},code=compute_{codes[-1]}"]


def _cuda_extension_setup():
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    cuda_home = _cuda_home()
    lib_dir = cuda_home / ("lib64" if (cuda_home / "lib64").exists() else "lib")

    class BuildWithKernels(BuildExtension):
        """Compiles csrc/*.cu with nvcc first and links the objects into the binding's library."""

        def build_extension(self, ext):
            out_dir = Path(self.build_temp) / "csrc"
            out_dir.mkdir(parents=True, exist_ok=True)
            objects = []
            for source in sorted(CSRC.glob("*.cu")):
                obj = out_dir / f"{source.stem}.o"
                subprocess.check_call([str(cuda_home / "bin" / "nvcc"), "-O3", "-std=c++17", "-Xcompiler", "-fPIC",
                                       *_gencode(os.environ.get("SIDKERNELS_CUDA_ARCHS", "80;90")),
                                       "-c", str(source), "-o", str(obj)])
                objects.append(str(obj))
            ext.extra_objects = objects
            super().build_extension(ext)

    extension = CppExtension(
        "sidkernels._C", [str(CSRC / "binding.cpp")],
        include_dirs=[str(cuda_home / "include")],
        library_dirs=[str(lib_dir)],
        extra_compile_args=["-O2"],
        # libtorch stays NEEDED: on a CUDA torch it brings libtorch_cuda, which resolves the binding's weak
        # stream getter (see csrc/binding.cpp)
        extra_link_args=["-Wl,--no-as-needed", "-ltorch", "-lcudart_static", "-ldl", "-lrt", "-lpthread"],
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildWithKernels}}


setup(**(_cuda_extension_setup() if os.environ.get("SIDKERNELS_BUILD_CUDA") == "1" else {}))
