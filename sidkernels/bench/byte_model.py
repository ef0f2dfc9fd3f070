"""Logical bytes moved by each benchmarked op, per mode: the numerator of every GB/s figure.

Rule (KERNELS.md 4): every tensor the op reads is counted once and every tensor it writes is counted once,
in its own dtype, whatever an implementation actually moves.  The count is a property of the op and the
mode, not of the provider, so the eager, compiled and fused rows of one case share one byte count and
their GB/s compare the same work.  Where an op can be implemented with different intermediate tensors, the
count follows the fused design's interface (the kernel op's inputs and outputs, see
:mod:`sidkernels.ops`), because that is the minimum traffic the fused op commits to.

Shapes are ``[N, ...]`` with ``D`` elements per sample; "big" tensors have ``N * D`` elements, per-sample
vectors ``N``.  Per-sample vectors (sigma, the per-sample loss, the per-sample gradient factor, the
upstream gradient of a per-sample loss, c_noise) are counted; 0-dim tensors (the ``reduction="sum"``
scalar and its gradient, the RNG seed) are not.  ``acc`` is fp32, or fp64 when an input is fp64.

===============  ========  ==========================================  ====================================
op               mode      reads                                       writes
===============  ========  ==========================================  ====================================
add_noise        forward   x, sigma[N]                                 x_t (x), net_in (net)
                 backward  g_x_t (x), g_net_in (net), sigma[N]         g_x (x)
precond_in       forward   x, sigma[N]                                 y (out), c_noise[N] (fp32)
                 backward  g_y (out), sigma[N]                         g_x (x)
precond_out      forward   x, F, sigma[N]                              D (acc)
                 backward  g_D (acc), sigma[N]                         g_x (x), g_F (F)
sid_loss         forward   a, b, x                                     loss[N], scale[N] (acc), h_a, h_b, h_x
                 backward  g_loss[N], scale[N] (acc), h_a, h_b, h_x    g_a (a), g_b (b), g_x (x)
fake_score_loss  forward   D, y, sigma[N]                              loss[N], scale[N] (acc), r (D|y)
                 backward  g_loss[N], scale[N] (acc), r                g_D (D)
distance         forward   a, b                                        dist[N], scale[N] (acc)
                 backward  g_dist[N], scale[N] (acc), a, b             g_a (a)
===============  ========  ==========================================  ====================================

``add_noise``: eps is drawn in-kernel and never stored, so it is not traffic.  ``sid_loss``: the forward
writes the three bracketed gradients ``h_*`` (each in its input's dtype) because the fused op computes
them in the same pass; the backward rescales them per sample into ``g_*``.  ``fake_score_loss``: only the
denoiser output D takes a gradient (the target y is the generator's sample, drawn without grad in the
trainer); r = D - y is stored in the promoted dtype of D and y.  ``distance``: SIGN's per-sample distance
with a gradient for the network output a only (b is data or a stop-gradient target, as in L_rec, L_flow and
L_reg); the backward re-reads a and b instead of a stored residual.  ``full`` (forward + backward) is the sum
of the two.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import torch

OPS = ("add_noise", "precond_in", "precond_out", "sid_loss", "fake_score_loss", "distance")
MODES = ("forward", "backward", "full")

# The dtype roles of each op's big tensors (keyword names of :func:`traffic`).
DTYPE_ROLES = {
    "add_noise": ("x", "net"),
    "precond_in": ("x", "out"),
    "precond_out": ("x", "F"),
    "sid_loss": ("a", "b", "x"),
    "fake_score_loss": ("D", "y"),
    "distance": ("a", "b"),
}


@dataclasses.dataclass(frozen=True)
class TensorIO:
    """One tensor read or written: its name, element count and dtype."""
    name: str
    numel: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclasses.dataclass(frozen=True)
class Traffic:
    """The tensors one op reads and writes in one mode."""
    reads: tuple[TensorIO, ...]
    writes: tuple[TensorIO, ...]

    @property
    def bytes_read(self) -> int:
        return sum(t.nbytes for t in self.reads)

    @property
    def bytes_written(self) -> int:
        return sum(t.nbytes for t in self.writes)

    @property
    def nbytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def __add__(self, other: "Traffic") -> "Traffic":
        return Traffic(self.reads + other.reads, self.writes + other.writes)


def _acc(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _passes(op: str, n: int, d: int, dt: dict) -> tuple[Traffic, Traffic]:
    """(forward, backward) traffic of ``op`` on ``n`` samples of ``d`` elements with role dtypes ``dt``."""
    f32 = torch.float32

    def big(name, dtype):
        return TensorIO(name, n * d, dtype)

    def rows(name, dtype=f32):
        return TensorIO(name, n, dtype)

    if op == "add_noise":
        fwd = Traffic((big("x", dt["x"]), rows("sigma")), (big("x_t", dt["x"]), big("net_in", dt["net"])))
        bwd = Traffic((big("g_x_t", dt["x"]), big("g_net_in", dt["net"]), rows("sigma")), (big("g_x", dt["x"]),))
    elif op == "precond_in":
        fwd = Traffic((big("x", dt["x"]), rows("sigma")), (big("y", dt["out"]), rows("c_noise")))
        bwd = Traffic((big("g_y", dt["out"]), rows("sigma")), (big("g_x", dt["x"]),))
    elif op == "precond_out":
        acc = _acc(dt["x"], dt["F"])
        fwd = Traffic((big("x", dt["x"]), big("F", dt["F"]), rows("sigma")), (big("D", acc),))
        bwd = Traffic((big("g_D", acc), rows("sigma")), (big("g_x", dt["x"]), big("g_F", dt["F"])))
    elif op == "sid_loss":
        acc = _acc(dt["a"], dt["b"], dt["x"])
        saved = tuple(big(f"h_{k}", dt[k]) for k in ("a", "b", "x"))
        fwd = Traffic(tuple(big(k, dt[k]) for k in ("a", "b", "x")),
                      (rows("loss", acc), rows("scale", acc)) + saved)
        bwd = Traffic((rows("g_loss", acc), rows("scale", acc)) + saved,
                      tuple(big(f"g_{k}", dt[k]) for k in ("a", "b", "x")))
    elif op == "fake_score_loss":
        acc = _acc(dt["D"], dt["y"])
        r = big("r", torch.promote_types(dt["D"], dt["y"]))
        fwd = Traffic((big("D", dt["D"]), big("y", dt["y"]), rows("sigma")),
                      (rows("loss", acc), rows("scale", acc), r))
        bwd = Traffic((rows("g_loss", acc), rows("scale", acc), r), (big("g_D", dt["D"]),))
    elif op == "distance":
        acc = _acc(dt["a"], dt["b"])
        inputs = (big("a", dt["a"]), big("b", dt["b"]))
        fwd = Traffic(inputs, (rows("dist", acc), rows("scale", acc)))
        bwd = Traffic((rows("g_dist", acc), rows("scale", acc)) + inputs, (big("g_a", dt["a"]),))
    else:
        raise ValueError(f"unknown op {op!r}; choose one of {OPS}")
    return fwd, bwd


def traffic(op: str, mode: str, shape: Iterable[int], dtype: torch.dtype = torch.float32, **role_dtypes
            ) -> Traffic:
    """Tensors read and written by ``op`` in ``mode`` for inputs of ``shape``.

    Every dtype role of the op (:data:`DTYPE_ROLES`) is ``dtype`` unless given by keyword, e.g.
    ``traffic("precond_out", "forward", shape, x=torch.float32, F=torch.bfloat16)``.
    """
    if op not in DTYPE_ROLES:
        raise ValueError(f"unknown op {op!r}; choose one of {OPS}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    unknown = set(role_dtypes) - set(DTYPE_ROLES[op])
    if unknown:
        raise ValueError(f"{op} has dtype roles {DTYPE_ROLES[op]}, not {sorted(unknown)}")
    shape = tuple(shape)
    n, d = shape[0], math.prod(shape[1:])
    dt = {role: role_dtypes.get(role, dtype) for role in DTYPE_ROLES[op]}
    fwd, bwd = _passes(op, n, d, dt)
    return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]


def logical_bytes(op: str, mode: str, shape: Iterable[int], dtype: torch.dtype = torch.float32,
                  **role_dtypes) -> int:
    """Bytes read + written by ``op`` in ``mode`` (see :func:`traffic`)."""
    return traffic(op, mode, shape, dtype, **role_dtypes).nbytes


def copy_bytes(nbytes: int) -> int:
    """Size of the source of the device-to-device copy whose traffic (read + write) is ``nbytes``."""
    return (nbytes + 1) // 2
