"""Probe of a built sidkernels CUDA library, run by test_build.py in a fresh interpreter (loading a library
registers its ops for the whole process, so it stays out of the test process).  Prints one JSON report.

    python -m tests.csrc.library_probe PATH/TO/LIBRARY.so

* ``loaded_at_import``: whether importing sidkernels alone defined any ``*_cuda`` op (it must not);
* ``schemas``: each op's ``_cuda`` schema and its Triton schema renamed to ``_cuda``;
* ``fake``: output metadata of the cuda and triton variants of every opcheck case on fake CUDA tensors;
* ``autograd``: on meta tensors, the sidkernels ops a forward + backward dispatched, and the gradients'
  metadata, per variant (fake CUDA tensors cannot carry autograd on a CPU build of torch).
"""
import json
import sys

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import sidkernels  # noqa: F401  (defines the Triton ops)
from sidkernels import cuda_ext
from sidkernels.ops import SPECS, kernel_op
from tests.ops.test_opcheck import _cases


def _meta(t):
    return None if t is None else [list(t.shape), str(t.dtype), list(t.stride()), str(t.device)]


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _variants(op):
    """The (cuda, triton) variants of a case's (Triton) op."""
    name = op._schema.name.split("::")[1].removesuffix("_triton")
    return {"cuda": kernel_op(name, "cuda"), "triton": kernel_op(name, "triton")}


class _Record(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "sidkernels":
            self.ops.append(func.name())
        return func(*args, **(kwargs or {}))


def main(path):
    report = {"loaded_at_import": any(hasattr(torch.ops.sidkernels, f"{n}_cuda") for n in SPECS)}
    cuda_ext.load_library(path)
    report["schemas"] = {
        name: [str(kernel_op(name, "cuda")._schema),
               str(kernel_op(name, "triton")._schema).replace(f"{name}_triton", f"{name}_cuda")]
        for name in SPECS}

    report["fake"] = {}
    with FakeTensorMode(), torch.no_grad():
        for case, (op, args) in _cases("cuda").items():
            report["fake"][case] = {backend: [_meta(t) for t in _tuple(variant(*args))]
                                    for backend, variant in _variants(op).items()}

    report["autograd"] = {}
    for case, (op, args) in _cases("meta").items():
        report["autograd"][case] = {}
        for backend, variant in _variants(op).items():
            with _Record() as record:
                outs = [t for t in _tuple(variant(*args)) if t.requires_grad]
                leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
                grads = (torch.autograd.grad(outs, leaves, [torch.empty_like(t) for t in outs], allow_unused=True)
                         if outs else ())
            report["autograd"][case][backend] = {"ops": record.ops, "grads": [_meta(g) for g in grads]}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
