"""torch.library.opcheck on every sidkernels custom op (schema, fake tensors, autograd registration)."""
import pytest
import torch

from sidkernels.ops import kernel_op


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
        "add_noise": (kernel_op("add_noise", "triton"), (xg, sigma, seed, 0, 0.5, torch.bfloat16, True)),
        "add_noise_plain": (kernel_op("add_noise", "triton"), (x, sigma, seed, 2, 0.5, None, False)),
        "precond_in": (kernel_op("precond_in", "triton"), (xg, sigma, 1, 0.5, torch.bfloat16)),
        "precond_in_bwd": (kernel_op("precond_in_bwd", "triton"), (bf, sigma, x, 0, 0.5, torch.float32)),
        "precond_out": (kernel_op("precond_out", "triton"), (xg, bf.clone().requires_grad_(True), sigma, 0,
                                                             0.5)),
        "precond_out_bwd": (kernel_op("precond_out_bwd", "triton"), (x, sigma, 0, 0.5, torch.float32, torch.bfloat16)),
        "sid_loss": (kernel_op("sid_loss", "triton"), (xg, bf.clone().requires_grad_(True), x, 1.2, 1e-5, True, True, True,
                                           False)),
        "fake_score_loss": (kernel_op("fake_score_loss", "triton"), (xg, bf, sigma, 0.5, True)),
        "rowscale": (kernel_op("rowscale", "triton"), (rows, rows, x, -1.0, torch.bfloat16)),
        "rowscale_stride0": (kernel_op("rowscale", "triton"), (torch.ones((), device=device).expand(2), rows, bf, 1.0,
                                                   torch.bfloat16)),
        "distance": (kernel_op("distance", "triton"), (bf.clone().requires_grad_(True), xg, 2, 0.01)),
        "distance_l1": (kernel_op("distance", "triton"), (xg, x, 1, 0.0)),
        "distance_bwd": (kernel_op("distance_bwd", "triton"), (torch.ones((), device=device).expand(2), rows, bf, x, 0,
                                                               torch.float32, torch.bfloat16)),
        "distance_bwd_one": (kernel_op("distance_bwd", "triton"), (rows, rows, x, x, 1, None, torch.float32)),
    }


@pytest.mark.parametrize("case", list(_cases("cpu")))
def test_opcheck(case, device):
    op, args = _cases(device)[case]
    torch.library.opcheck(op, args)


def test_kernel_ops_reject_mixed_layouts():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="must share one contiguous or channels_last layout"):
        kernel_op("precond_out", "triton")(x, x.contiguous(memory_format=torch.channels_last), torch.ones(2), 0, 0.5)
    with pytest.raises(ValueError, match="must share one"):
        kernel_op("add_noise", "triton")(x[..., ::2], torch.ones(2), torch.tensor([1]), 0, 0.5, None, False)


def test_every_op_has_a_triton_variant():
    from sidkernels.ops import SPECS, registered_backends
    assert all("triton" in registered_backends(name) for name in SPECS)
