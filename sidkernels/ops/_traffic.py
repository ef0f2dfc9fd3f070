"""The byte model's vocabulary: the tensors an op reads and writes in one pass.

Rule: every tensor the op reads is counted once and every tensor it writes is counted once, in its own dtype,
whatever an implementation actually moves.  The count is a property of the op and the mode, not of the
provider, so the eager, compiled and fused rows of one benchmark case share one byte count and their GB/s
compare the same work.  Each op declares its passes (:attr:`sidkernels.ops._registry.Op.passes`) following
its fused design's interface: that is the minimum traffic the fused op commits to.  "Big" tensors have
``N * D`` elements, per-sample vectors ``N``; 0-dim tensors (a summed loss, the RNG seed) are not counted.
"""
from __future__ import annotations

import dataclasses

import torch

MODES = ("forward", "backward", "full")


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


@dataclasses.dataclass(frozen=True)
class Shape:
    """Factories of the big ``[N, D]`` and per-sample ``[N]`` tensors of one problem."""
    n: int
    d: int

    def big(self, name: str, dtype: torch.dtype) -> TensorIO:
        return TensorIO(name, self.n * self.d, dtype)

    def rows(self, name: str, dtype: torch.dtype = torch.float32) -> TensorIO:
        return TensorIO(name, self.n, dtype)
