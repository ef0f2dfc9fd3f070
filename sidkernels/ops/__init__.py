"""The fused ops and their registry.

Each op is one module (``sidkernels/ops/NAME/``: the public function, its kernel ops, its descriptor; its
``reference.py`` and ``triton.py``) with a CUDA twin (``csrc/NAME.cu`` + ``csrc/bindings/NAME.cpp``).  :data:`OPS` below is
the one list of them: the public API, the benchmarks, the self-check, the backend rule and every test over
all ops are derived from it (docs/adding-an-op.md).
"""
from sidkernels.ops import (add_noise, edm_precond_in, edm_precond_out, fake_score_loss, sample_distance,
                            sid_generator_loss, sid_generator_loss_raw)
from sidkernels.ops._registry import KernelOp, Op, kernel_ops

OPS: dict[str, Op] = {op.name: op for op in (
    add_noise.OP,
    edm_precond_in.OP,
    edm_precond_out.OP,
    sid_generator_loss.OP,
    sid_generator_loss_raw.OP,
    fake_score_loss.OP,
    sample_distance.OP,
)}

__all__ = ["KernelOp", "OPS", "Op", "kernel_ops"]
