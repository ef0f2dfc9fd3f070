"""Kernel ops in the ``sidkernels::`` namespace: one schema, exact fake and autograd per op, one variant
per backend (``NAME_triton`` here; ``NAME_cuda`` from the CUDA extension).  Look them up with
:func:`kernel_op`."""
from sidkernels.ops import distance, losses, noise, precond
from sidkernels.ops._layout import sample_major
from sidkernels.ops._registry import OpSpec, kernel_op, register, registered_backends

SPECS = {
    "add_noise": noise.SPEC,
    "precond_in": precond.IN_SPEC,
    "precond_in_bwd": precond.IN_BWD_SPEC,
    "precond_out": precond.OUT_SPEC,
    "precond_out_bwd": precond.OUT_BWD_SPEC,
    "sid_loss": losses.SID_SPEC,
    "fake_score_loss": losses.FAKE_SPEC,
    "rowscale": losses.ROWSCALE_SPEC,
    "distance": distance.SPEC,
    "distance_bwd": distance.BWD_SPEC,
}

__all__ = ["OpSpec", "SPECS", "kernel_op", "register", "registered_backends", "sample_major"]
