"""The plain PyTorch references of every fused op (``backend="torch"``, the tests' oracle, the benchmarks'
eager baseline), by name: ``sidkernels.ref.NAME_ref`` for each op of :data:`sidkernels.ops.OPS`, plus the
coefficient table of the preconditioners (:func:`coefficients`)."""
from sidkernels.ops import OPS
from sidkernels.ops._precond import coefficients

globals().update({op.reference.__name__: op.reference for op in OPS.values()})

__all__ = ["coefficients", *sorted(op.reference.__name__ for op in OPS.values())]
