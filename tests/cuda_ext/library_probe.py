"""Probe of the CUDA extension built against a CUDA build of torch (no GPU needed), run by
test_cuda_torch_build.py in that torch's interpreter.  Prints one JSON report.

    python -m tests.cuda_ext.library_probe jit            # build csrc/ just in time (ninja + nvcc) and load it
    python -m tests.cuda_ext.library_probe PATH/TO/LIB.so # load an ahead-of-time build

* ``torch``: the torch version and its CUDA version (a CUDA build, or the probe is pointless);
* ``kernels_at_import``: kernel ops that had a CUDA kernel after ``import sidkernels`` alone (none may);
* ``cuda_kernels`` / ``autograd``: per kernel op, whether the loaded library registered its CUDA kernel, and
  whether the op has an autograd kernel (the Python formula shared with the Triton variant);
* ``fake``: output metadata of the cuda and triton variants of every kernel case on fake CUDA tensors;
* ``backward_ops``: on meta tensors, the sidkernels ops a forward + backward of each cuda variant dispatched.
"""
import json
import os
import sys

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from sidkernels import cuda_ext
from sidkernels.cuda_ext import build
from sidkernels.ops import kernel_ops
from tests.ops.test_registry import _kernel_cases


def _meta(t):
    return None if t is None else [list(t.shape), str(t.dtype), list(t.stride()), str(t.device)]


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


class _Record(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "sidkernels":
            self.ops.append(func.name())
        return func(*args, **(kwargs or {}))


def _has(kernel, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(kernel.qualname("cuda"), key)


def main(what: str) -> None:
    kernels = kernel_ops()
    report = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
              "kernels_at_import": sorted(n for n, k in kernels.items() if _has(k, "CUDA"))}
    if what == "jit":
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        report["library"] = cuda_ext.load_library(build.jit_build())
    else:
        report["library"] = cuda_ext.load_library(what)
    report["cuda_kernels"] = {n: _has(k, "CUDA") for n, k in kernels.items()}
    report["autograd"] = {n: _has(k, "Autograd") for n, k in kernels.items() if k.backward is not None}
    report["fake"] = {}
    with FakeTensorMode(), torch.no_grad():
        for case, (kernel, args) in _kernel_cases(torch.device("cuda")).items():
            report["fake"][case] = {backend: [_meta(t) for t in _tuple(kernel.variant(backend)(*args))]
                                    for backend in ("cuda", "triton")}
    report["backward_ops"] = {}
    for case, (kernel, args) in _kernel_cases(torch.device("meta")).items():
        if kernel.backward is None:
            continue
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if not leaves:
            continue
        with _Record() as record:
            outs = [t for t in _tuple(kernel.variant("cuda")(*args)) if t.requires_grad]
            grads = torch.autograd.grad(outs, leaves, [torch.empty_like(t) for t in outs], allow_unused=True)
        report["backward_ops"][case] = {"ops": record.ops, "grads": [_meta(g) for g in grads]}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
