"""Preconditioning wrappers (docs/networks.md §1) with a stand-in model, and with a small real U-Net."""
import math

import pytest
import torch
from torch import nn

import sidkernels
from sidkernels.networks import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond
from tests.helpers import assert_close

SMALL = dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0)


class Recorder(nn.Module):
    """Stand-in model: F = 2 * input + c_noise (per sample); records what it was called with."""

    def __init__(self, out_channels=3):
        super().__init__()
        self.out_channels = out_channels
        self.calls = []

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        self.calls.append(dict(x=x, noise=noise_labels, labels=class_labels, aug=augment_labels))
        out = 2 * x + noise_labels.reshape(-1, 1, 1, 1).to(x.dtype)
        return out.repeat(1, self.out_channels // x.shape[1], 1, 1)


def with_recorder(net, out_channels=3):
    net.model = Recorder(out_channels)
    return net


def expected_edm(x, s, sd=0.5):
    s4 = s.reshape(-1, 1, 1, 1)
    c_skip, c_out = sd ** 2 / (s4 ** 2 + sd ** 2), s4 * sd / (s4 ** 2 + sd ** 2).sqrt()
    c_in, c_noise = 1 / (s4 ** 2 + sd ** 2).sqrt(), s4.log() / 4
    return c_skip * x + c_out * (2 * c_in * x + c_noise)


def expected_vp(x, s):
    s4 = s.reshape(-1, 1, 1, 1)
    t = ((0.1 ** 2 + 2 * 19.9 * (1 + s4 ** 2).log()).sqrt() - 0.1) / 19.9  # sigma_vp^-1(s)
    return x - s4 * (2 * x / (s4 ** 2 + 1).sqrt() + 999 * t)


def expected_ve(x, s):
    s4 = s.reshape(-1, 1, 1, 1)
    return x + s4 * (2 * x + (s4 / 2).log())


@pytest.mark.parametrize("cls, expected", [(EDMPrecond, expected_edm), (VPPrecond, expected_vp),
                                           (VEPrecond, expected_ve)])
def test_wrapper_formulas(cls, expected):
    net = with_recorder(cls(8, 3, model_type="SongUNet", **SMALL))
    x, s = torch.randn(4, 3, 8, 8), torch.tensor([0.01, 0.5, 3.0, 60.0])
    d = net(x, s)
    assert d.dtype == torch.float32
    assert_close(d, expected(x, s), torch.float32, tol=1e-5)
    call = net.model.calls[-1]
    assert call["noise"].shape == (4,) and call["labels"] is None and call["x"].dtype == torch.float32


def test_sigma_forms_and_fp64_input():
    net = with_recorder(EDMPrecond(8, 3, model_type="SongUNet", **SMALL))
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    ref = net(x.float(), torch.full((3,), 1.7))
    for sigma in (1.7, torch.tensor(1.7, dtype=torch.float64), torch.full((3, 1, 1, 1), 1.7), torch.tensor([1.7])):
        d = net(x, sigma)
        assert d.dtype == torch.float32
        assert_close(d, ref, torch.float32)
    with pytest.raises(ValueError, match="sigma must be a scalar or have one value per sample"):
        net(x, torch.ones(2))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 8, 8\]"):
        net(x[:, :2], 1.0)


def test_net_input_skips_the_scaling_and_matches():
    net = EDMPrecond(8, 3, model_type="SongUNet", **SMALL)
    x0, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 4.0])
    x_t, net_in = sidkernels.add_noise(x0, sigma, seed=3, return_net_input=True)
    assert_close(net(x_t, sigma, net_input=net_in), net(x_t, sigma), torch.float32)
    with pytest.raises(ValueError, match="net_input must have the shape of x"):
        net(x_t, sigma, net_input=net_in[:1])


def test_labels_are_required_for_conditional_nets_and_dropped_otherwise():
    cond = with_recorder(EDMPrecond(8, 3, label_dim=5, model_type="SongUNet", **SMALL))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"class_labels are required.*label_dim=5"):
        cond(x, 1.0)
    cond(x, 1.0, torch.eye(5, dtype=torch.float64)[:2])
    labels = cond.model.calls[-1]["labels"]
    assert labels.dtype == torch.float32 and labels.shape == (2, 5)
    uncond = with_recorder(EDMPrecond(8, 3, model_type="SongUNet", **SMALL))
    uncond(x, 1.0, torch.eye(5)[:2])
    assert uncond.model.calls[-1]["labels"] is None


def test_use_fp16_is_cuda_only():
    net = with_recorder(EDMPrecond(8, 3, use_fp16=True, model_type="SongUNet", **SMALL))
    net(torch.randn(2, 3, 8, 8), 1.0)
    assert net.model.calls[-1]["x"].dtype == torch.float32  # CPU: fp32, as the official wrapper
    assert net.model.calls[-1]["noise"].dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="use_fp16 only takes effect on CUDA")
def test_use_fp16_runs_the_unet_in_fp16_on_cuda():
    net = EDMPrecond(8, 3, use_fp16=True, model_type="SongUNet", **SMALL).cuda()
    seen = {}
    net.model.register_forward_hook(lambda m, args, out: seen.update(x=args[0].dtype, out=out.dtype))
    d = net(torch.randn(2, 3, 8, 8, device="cuda"), 1.0)
    assert seen == dict(x=torch.float16, out=torch.float16) and d.dtype == torch.float32
    assert net(torch.randn(2, 3, 8, 8, device="cuda"), 1.0, force_fp32=True).dtype == torch.float32


def test_sigma_ranges():
    vp = VPPrecond(8, 3, model_type="SongUNet", **SMALL)
    assert vp.sigma_min == pytest.approx(9.77e-4, rel=1e-3) and vp.sigma_max == pytest.approx(152.17, rel=1e-4)
    ve = VEPrecond(8, 3, model_type="SongUNet", **SMALL)
    assert (ve.sigma_min, ve.sigma_max) == (0.02, 100.0)
    edm = EDMPrecond(8, 3, model_type="SongUNet", **SMALL)
    assert (edm.sigma_min, edm.sigma_max) == (0.0, math.inf)
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert torch.equal(edm.round_sigma(s), s)


def test_vp_with_custom_schedule_computes_its_own_noise_labels():
    net = with_recorder(VPPrecond(8, 3, beta_d=10.0, beta_min=0.5, model_type="SongUNet", **SMALL))
    net(torch.randn(1, 3, 8, 8), 2.0)
    t = (math.sqrt(0.25 + 20.0 * math.log(1 + 4.0)) - 0.5) / 10.0
    assert net.model.calls[-1]["noise"].item() == pytest.approx(999 * t, rel=1e-5)


def test_iddpm_table_rounding_and_output_slice():
    net = with_recorder(iDDPMPrecond(8, 3, model_type="SongUNet", **SMALL), out_channels=6)
    assert net.u.shape == (1001,) and net.u[-1] == 0
    assert net.sigma_min == pytest.approx(0.00642, rel=2e-3) and net.sigma_max == pytest.approx(20291, rel=1e-3)
    s = torch.tensor([0.3, 5.0], dtype=torch.float64)
    rounded = net.round_sigma(s)
    assert rounded.dtype == torch.float64 and torch.isin(rounded.float(), net.u).all()
    assert (rounded - s).abs().max() < 0.05
    x = torch.randn(2, 3, 8, 8)
    d = net(x, s)
    idx = (s.float()[:, None] - net.u[None]).abs().argmin(1)
    assert torch.equal(net.model.calls[-1]["noise"], (999 - idx).float())
    s4 = s.float().reshape(-1, 1, 1, 1)
    assert_close(d, x - s4 * (2 * x / (s4 ** 2 + 1).sqrt() + (999 - idx).float().reshape(-1, 1, 1, 1)),
                 torch.float32)


def test_gradients_flow_to_the_input_and_weights():
    net = EDMPrecond(8, 3, model_type="DhariwalUNet", channels_per_head=8, **SMALL)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    net(x, torch.tensor([0.5, 2.0])).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net.model.enc["8x8_conv"].weight.grad is not None


def test_triton_backend_matches_torch_backend():
    """The wrapper through the fused Triton custom ops (interpreted without a GPU) equals the reference."""
    net = EDMPrecond(8, 3, model_type="SongUNet", **SMALL).to(memory_format=torch.channels_last)
    x, s = torch.randn(2, 3, 8, 8), torch.tensor([0.2, 7.0])
    with sidkernels.use_backend("torch"):
        ref = net(x, s)
    with sidkernels.use_backend("triton"):
        out = net(x, s)
    assert_close(out, ref, torch.float32)
