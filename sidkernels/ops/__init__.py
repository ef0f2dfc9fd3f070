"""``torch.library`` custom ops in the ``sidkernels::`` namespace: exact fakes and registered autograd
around the Triton launchers of :mod:`sidkernels.kernels`."""
from sidkernels.ops.losses import fake_score_loss_triton, rowscale_triton, sid_loss_triton
from sidkernels.ops.noise import add_noise_triton
from sidkernels.ops.precond import (precond_in_bwd_triton, precond_in_triton, precond_out_bwd_triton,
                                    precond_out_triton)

__all__ = [
    "add_noise_triton", "fake_score_loss_triton", "precond_in_bwd_triton", "precond_in_triton",
    "precond_out_bwd_triton", "precond_out_triton", "rowscale_triton", "sid_loss_triton",
]
