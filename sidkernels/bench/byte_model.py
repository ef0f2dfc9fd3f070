"""Logical bytes moved by each benchmarked op, per mode: the numerator of every GB/s figure.

Every op declares its own passes (:attr:`sidkernels.ops.Op.passes`, counted by the rule of
:mod:`sidkernels.ops._traffic`: each tensor read once and written once, in its dtype); this module answers
for any op of the registry and adds one composite count, the SiD generator step's loss path.

**The generator step's loss path** (:func:`generator_loss_path`).  From the networks' raw outputs F_phi, F_psi
(the teacher's and the fake score's, at the same x_t) to the gradients of F_phi, F_psi, x_t and x_g:

* ``chain`` (the path through denoiser outputs): two ``edm_precond_out`` forwards write a and b in fp32,
  ``sid_generator_loss`` reads a, b, x_g and writes three bracketed gradients, its backward rescales them, the
  two ``edm_precond_out`` backwards write the gradients of F_phi, F_psi and two of x_t, which autograd adds
  (2 reads, 1 write);
* ``fused_raw``: ``sid_generator_loss_raw``, forward and backward;
* ``minimum``: the math's least traffic with one forward and one backward pass: each input read once per
  pass (w_n needs a whole sample before any gradient can be scaled, so the gradients cannot be written in
  the forward), each gradient written once, the per-sample scalars.  ``fused_raw`` meets it.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from sidkernels._abi import acc_dtype
from sidkernels.ops import OPS
from sidkernels.ops._traffic import MODES, Shape, TensorIO, Traffic

__all__ = ["MODES", "TensorIO", "Traffic", "copy_bytes", "generator_loss_path", "logical_bytes", "traffic"]


def traffic(op: str, mode: str, shape: Iterable[int], dtype: torch.dtype = torch.float32, **role_dtypes) -> Traffic:
    """Tensors read and written by op ``op`` in ``mode`` for inputs of ``shape`` (see :meth:`Op.traffic`)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose one of {tuple(OPS)}")
    return OPS[op].traffic(mode, shape, dtype, **role_dtypes)


def logical_bytes(op: str, mode: str, shape: Iterable[int], dtype: torch.dtype = torch.float32,
                  **role_dtypes) -> int:
    """Bytes read + written by ``op`` in ``mode`` (see :func:`traffic`)."""
    return traffic(op, mode, shape, dtype, **role_dtypes).nbytes


def copy_bytes(nbytes: int) -> int:
    """Size of the source of the device-to-device copy whose traffic (read + write) is ``nbytes``."""
    return (nbytes + 1) // 2


def generator_loss_path(shape: Iterable[int], raw: torch.dtype = torch.bfloat16,
                        x: torch.dtype = torch.float32) -> dict[str, int]:
    """Bytes of the generator step's loss path (module docstring) for samples of ``shape``, raw network
    outputs in ``raw`` and x_t, x_g in ``x``: ``{"chain", "fused_raw", "minimum"}``."""
    shape = tuple(shape)
    s = Shape(shape[0], math.prod(shape[1:]))
    acc = acc_dtype(raw, x)
    out = traffic("edm_precond_out", "full", shape, x=x, F=raw)
    loss = traffic("sid_generator_loss", "full", shape, a=acc, b=acc, x=x)
    grad_sum = Traffic((s.big("g_x_t^a", x), s.big("g_x_t^b", x)), (s.big("g_x_t", x),))
    chain = out + out + loss + grad_sum
    fused = traffic("sid_generator_loss_raw", "full", shape, F_phi=raw, F_psi=raw, x_t=x, x_g=x)
    inputs = (s.big("F_phi", raw), s.big("F_psi", raw), s.big("x_t", x), s.big("x_g", x), s.rows("sigma"))
    minimum = (Traffic(inputs, (s.rows("loss", acc), s.rows("scale", acc)))
               + Traffic(inputs + (s.rows("g_loss", acc), s.rows("scale", acc)),
                         tuple(s.big(f"g_{t.name}", t.dtype) for t in inputs[:4])))
    return {"chain": chain.nbytes, "fused_raw": fused.nbytes, "minimum": minimum.nbytes}
