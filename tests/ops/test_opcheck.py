"""torch.library.opcheck on every sidkernels custom op (schema, fake tensors, autograd registration)."""
import pytest
import torch

from sidkernels import ops


def _cases(device):
    """Forward ops get inputs that require grad (autograd registration is checked); the backward ops are
    first-order only, so theirs do not."""
    x = torch.randn(2, 3, 5, 5, device=device)
    xg = x.clone().requires_grad_(True)
    bf = torch.randn(2, 3, 5, 5, device=device).bfloat16()
    sigma = torch.rand(2, device=device) + 0.1
    seed = torch.tensor([5], device=device)
    rows = torch.rand(2, device=device)
    return {
        "add_noise": (ops.add_noise_triton, (xg, sigma, seed, 0, 0.5, torch.bfloat16, True)),
        "add_noise_plain": (ops.add_noise_triton, (x, sigma, seed, 2, 0.5, None, False)),
        "precond_in": (ops.precond_in_triton, (xg, sigma, 1, 0.5, torch.bfloat16)),
        "precond_in_bwd": (ops.precond_in_bwd_triton, (bf, sigma, x, 0, 0.5, torch.float32)),
        "precond_out": (ops.precond_out_triton, (xg, bf.clone().requires_grad_(True), sigma, 0, 0.5)),
        "precond_out_bwd": (ops.precond_out_bwd_triton, (x, sigma, 0, 0.5, torch.float32, torch.bfloat16)),
        "sid_loss": (ops.sid_loss_triton, (xg, bf.clone().requires_grad_(True), x, 1.2, 1e-5, True, True, True,
                                           False)),
        "fake_score_loss": (ops.fake_score_loss_triton, (xg, bf, sigma, 0.5, True)),
        "rowscale": (ops.rowscale_triton, (rows, rows, x, -1.0, torch.bfloat16)),
        "rowscale_stride0": (ops.rowscale_triton, (torch.ones((), device=device).expand(2), rows, bf, 1.0,
                                                   torch.bfloat16)),
    }


@pytest.mark.parametrize("case", list(_cases("cpu")))
def test_opcheck(case, device):
    op, args = _cases(device)[case]
    torch.library.opcheck(op, args)
