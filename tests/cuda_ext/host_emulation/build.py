"""Build of the CUDA C++ backend for the host emulation (this folder), so that CPU CI runs the kernels.

The kernels (``csrc/*.cu``, from :func:`sidkernels.cuda_ext.build.kernel_sources`) and the emulation's scheduler
are compiled as C++ with ``-DSK_HOST_EMULATION`` and AddressSanitizer + UndefinedBehaviorSanitizer
(out-of-bounds accesses, misaligned vector loads and integer overflow abort the run: the CPU stand-in of
compute-sanitizer memcheck); the bindings (``csrc/bindings/*.cpp``) are compiled, as one translation unit, against the
installed CPU torch and register the same ``sidkernels::*_cuda`` kernels for CPU tensors.  This folder comes
first on the include path: its stand-ins replace the CUDA headers and ``host_emulation_target.h`` is what
``csrc/target.h`` includes.  A process that loads the library must start with the sanitizer runtime
preloaded: :func:`sanitizer_env`.

    python -m tests.cuda_ext.host_emulation.build [pytest args]   # build, then run test_cuda_ops.py on it
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sidkernels.cuda_ext import build as recipe

ROOT = Path(__file__).resolve().parents[3]
EMULATION = Path(__file__).resolve().parent
LIBRARY_ENV = "SIDKERNELS_CUDA_HOST_EMULATION"  # path of the built library, read by test_cuda_ops.py
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
INCLUDES = [f"-I{EMULATION}", f"-I{recipe.CSRC}"]


def _cxx() -> str:
    return os.environ.get("CXX", "c++")


def _run(cmd: list[str]) -> tuple[int, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"


def _device_compile(source: Path, obj: Path) -> list[str]:
    """The command compiling a kernel source (or the emulation's scheduler) for the host emulation."""
    return [_cxx(), recipe.KERNEL_STD, "-O1", "-g", "-fPIC", *recipe.WARNINGS_AS_ERRORS["cxx"], "-Wno-unknown-pragmas",
            "-DSK_HOST_EMULATION", *INCLUDES, *SANITIZE, "-x", "c++", "-c", str(source), "-o", str(obj)]


def _compile_and_link(jobs: dict[str, list[str]], objects: list[Path], library: Path, libs: list[str]):
    """Compile, then link.  ``-Bsymbolic`` binds the library's calls of the emulated runtime (cudaGetLastError,
    ...) to its own definitions: a CUDA build of torch has loaded the real libcudart into the process, whose
    functions would otherwise win (and report that there is no driver)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(_run, jobs.values())))
    if all(code == 0 for code, _ in results.values()):
        results["link"] = _run([_cxx(), "-shared", "-Wl,-Bsymbolic", *SANITIZE, "-o", str(library),
                                *map(str, objects), *libs])
    return results, library


def build(out: Path) -> tuple[dict[str, tuple[int, str]], Path]:
    """Compile every source in parallel, then link ``out/libsidkernels_host_emulation.so``.

    Returns each step's (return code, log) and the library's path (which exists only if every step passed).
    """
    import torch
    from torch.utils import cpp_extension

    out.mkdir(parents=True, exist_ok=True)
    sources = {path.name: path for path in recipe.kernel_sources()} | {"runtime.cpp": EMULATION / "runtime.cpp"}
    jobs = {name: _device_compile(path, out / f"{name}.o") for name, path in sources.items()}
    unity = out / "bindings.cpp"  # every binding in one translation unit: the torch headers are parsed once
    unity.write_text("".join(f'#include "{path}"\n' for path in recipe.binding_sources()))
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    jobs["bindings"] = [_cxx(), "-O1", "-fPIC", recipe.BINDING_STD, *recipe.WARNINGS_AS_ERRORS["cxx"], abi,
                        "-DSK_HOST_EMULATION", *INCLUDES, *(f"-isystem{p}" for p in cpp_extension.include_paths()),
                        "-c", str(unity), "-o", str(out / "bindings.o")]
    objects = [out / f"{name}.o" for name in sources] + [out / "bindings.o"]
    return _compile_and_link(jobs, objects, out / "libsidkernels_host_emulation.so",
                             [f"-L{cpp_extension.library_paths()[0]}", "-lc10", "-ltorch_cpu", "-ltorch"])


def build_probe(out: Path) -> tuple[dict[str, tuple[int, str]], Path]:
    """Build ``out/libemulation_probe.so``: the kernels of emulation_probe.cu on the emulation (no torch)."""
    out.mkdir(parents=True, exist_ok=True)
    sources = {"emulation_probe.cu": EMULATION.parent / "emulation_probe.cu", "runtime.cpp": EMULATION / "runtime.cpp"}
    jobs = {name: _device_compile(path, out / f"probe-{name}.o") for name, path in sources.items()}
    return _compile_and_link(jobs, [out / f"probe-{name}.o" for name in jobs], out / "libemulation_probe.so", [])


def sanitizer_runtime() -> str | None:
    """The AddressSanitizer runtime of the compiler, or None when it has none."""
    path = subprocess.run([_cxx(), "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def sanitizer_env(library: Path) -> dict[str, str]:
    """The environment of a process that loads the library: the ASan runtime preloaded (it must come
    first, and C++ exceptions need the real __cxa_throw loaded with it), leak checks off (the interpreter
    never frees some memory), no CUDA device (on a GPU machine the CUDA driver is never initialised under
    ASan), and the library's path."""
    libstdcxx = subprocess.run([_cxx(), "-print-file-name=libstdc++.so"], capture_output=True, text=True)
    preload = [sanitizer_runtime(), libstdcxx.stdout.strip()]  # libstdc++ too: ASan intercepts __cxa_throw
    return dict(os.environ, LD_PRELOAD=" ".join(preload), ASAN_OPTIONS="detect_leaks=0:detect_container_overflow=0",
                UBSAN_OPTIONS="print_stacktrace=1", CUDA_VISIBLE_DEVICES="", **{LIBRARY_ENV: str(library)})


def run_suite(library: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    """Run the GPU suites (tests/cuda_ext/test_cuda_ops.py, and the trainers' GPU configuration with the CUDA
    backend, tests/distill/test_gpu_configuration.py) against the emulation in a fresh interpreter (loading the
    library implements the ``*_cuda`` ops for the whole process, so it stays out of the calling one)."""
    suites = [str(ROOT / "tests" / "cuda_ext" / "test_cuda_ops.py"), str(ROOT / "tests" / "distill" /
                                                                         "test_gpu_configuration.py")]
    cmd = [sys.executable, "-m", "pytest", *suites, "-q",
           "-p", "no:cacheprovider", "--capture=sys", *pytest_args]  # sanitizer reports reach stderr
    return subprocess.run(cmd, cwd=ROOT, env=sanitizer_env(library), capture_output=True, text=True)


def main(argv: list[str]) -> int:
    import tempfile
    results, library = build(Path(tempfile.mkdtemp(prefix="sidkernels-host-emulation-")))
    for step, (code, log) in results.items():
        if code != 0:
            print(log)
            return code
    proc = run_suite(library, *argv)
    print(proc.stdout + proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
