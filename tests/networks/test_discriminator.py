"""SiDA's discriminator head: the U-Nets' ``output`` modes against a hook on the deepest encoder features."""
import pytest
import torch

from sidkernels.networks import EDMPrecond
from sidkernels.networks.dhariwal_unet import DhariwalUNet
from sidkernels.networks.song_unet import SongUNet

SMALL = dict(img_resolution=16, in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2, 2),
             num_blocks=1, dropout=0.0)
NETWORKS = {
    "ddpm++": lambda: SongUNet(**SMALL, attn_resolutions=(8,)),
    "ncsn++": lambda: SongUNet(**SMALL, attn_resolutions=(8,), embedding_type="fourier", channel_mult_noise=2,
                               encoder_type="residual", resample_filter=(1, 3, 3, 1)),
    "adm": lambda: DhariwalUNet(**SMALL, attn_resolutions=(8,), channels_per_head=8),
}


def deepest_features(net, *args):
    """The deepest encoder output (the last entry of ``enc``), captured by a hook during a decoder pass."""
    seen = {}
    last = list(net.enc.values())[-1]
    handle = last.register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    out = net(*args)
    handle.remove()
    return out, seen["h"]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_logits_are_the_channel_mean_of_the_deepest_encoder_features(name):
    torch.manual_seed(0)
    net = NETWORKS[name]().eval()
    x, noise = torch.randn(3, 3, 16, 16), torch.randn(3)
    out, h = deepest_features(net, x, noise)
    logits = net(x, noise, output="encoder")
    assert logits.shape == (3, 1, 4, 4)
    torch.testing.assert_close(logits, h.mean(dim=1, keepdim=True), rtol=0, atol=0)
    out2, logits2 = net(x, noise, output="both")
    torch.testing.assert_close(out2, out, rtol=0, atol=0)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=0)


def test_encoder_output_skips_the_decoder():
    torch.manual_seed(0)
    net = NETWORKS["ddpm++"]()
    net(torch.randn(2, 3, 16, 16), torch.randn(2), output="encoder").square().sum().backward()
    assert all(p.grad is None for p in net.dec.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.enc.parameters())


def test_preconditioner_returns_fp32_logits_and_the_same_denoiser():
    torch.manual_seed(0)
    net = EDMPrecond(img_resolution=16, img_channels=3, model_type="SongUNet", model_channels=16,
                     channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,), dropout=0.0).eval()
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 4.0])
    D = net(x, sigma)
    D2, logits = net(x, sigma, output="both")
    torch.testing.assert_close(D2, D, rtol=0, atol=0)
    assert logits.dtype == torch.float32 and logits.shape == (2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x, sigma, output="encoder").dtype == torch.float32


@pytest.mark.parametrize("output", ["logits", "", None])
def test_unknown_output_is_refused(output):
    net = NETWORKS["adm"]()
    with pytest.raises(ValueError, match="output must be one of"):
        net(torch.randn(1, 3, 16, 16), torch.randn(1), output=output)
