"""Forward behaviour of small SongUNet / DhariwalUNet configurations: shapes, layouts, precision, errors."""
import pytest
import torch

from sidkernels.networks import DhariwalUNet, SongUNet
from tests.helpers import assert_close

SMALL = dict(img_resolution=16, in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2],
             num_blocks=1, attn_resolutions=[8], dropout=0.0)
SONG_VARIANTS = {
    "ddpmpp": dict(),
    "ncsnpp": dict(embedding_type="fourier", encoder_type="residual", channel_mult_noise=2,
                   resample_filter=[1, 3, 3, 1]),
    "skip": dict(encoder_type="skip", decoder_type="skip"),
}


def randomized(net):
    """Replace the (near-)zero output inits so the outputs depend on every layer."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.25 if p.dim() > 1 else 0.1)
    return net.eval()


def song(variant="ddpmpp", **kw):
    return SongUNet(**{**SMALL, **SONG_VARIANTS[variant], **kw})


def adm(**kw):
    return DhariwalUNet(**{**SMALL, "channels_per_head": 8, **kw})


def inputs(n=3, label_dim=0, augment_dim=0):
    x = torch.randn(n, 3, 16, 16)
    noise = torch.randn(n) * 0.5
    labels = torch.eye(label_dim)[torch.randint(label_dim, (n,))] if label_dim else None
    aug = torch.randn(n, augment_dim) if augment_dim else None
    return x, noise, labels, aug


NETS = {
    **{f"song-{v}": (lambda v=v: song(v, label_dim=4, augment_dim=9)) for v in SONG_VARIANTS},
    "adm": lambda: adm(label_dim=4, augment_dim=9),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_forward_shape_layout_and_bf16(name):
    net = randomized(NETS[name]())
    x, noise, labels, aug = inputs(label_dim=4, augment_dim=9)
    out = net(x, noise, labels, aug)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.abs().max() > 0.1

    cl = net.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert_close(cl(x_cl, noise, labels, aug), out, torch.float32, tol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = cl(x_cl, noise, labels, aug)
    assert low.dtype == torch.bfloat16
    assert_close(low.float(), out, torch.bfloat16, tol=5e-2)


def test_fresh_adm_outputs_zero_and_songunet_starts_small():
    x, noise, _, _ = inputs()
    assert torch.count_nonzero(adm()(x, noise)) == 0  # out_conv is zero-initialised
    assert song()(x, noise).abs().max() < 1e-2  # aux_conv is initialised at 1e-5 scale


def test_embedding_is_fp32_under_autocast():
    net = song(label_dim=4)
    _, noise, labels, _ = inputs(label_dim=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = net.embedding(noise, labels, None)
    assert emb.dtype == torch.float32


def test_songunet_label_scaling_and_embedding_order():
    """emb = pos(c_noise) as [sin, cos] + map_label(onehot * sqrt(label_dim)), then the two-layer MLP."""
    net = song(label_dim=4)
    noise = torch.tensor([0.3])
    onehot = torch.eye(4)[2:3]
    half = net.map_noise.num_channels // 2
    freqs = (1e-4) ** (torch.arange(half) / (half - 1))  # endpoint=True
    pos = torch.cat([(noise[:, None] * freqs).sin(), (noise[:, None] * freqs).cos()], dim=1)
    pre = pos + net.map_label(onehot * 2.0)
    expected = torch.nn.functional.silu(net.map_layer1(torch.nn.functional.silu(net.map_layer0(pre))))
    assert_close(net.embedding(noise, onehot, None), expected, torch.float32)


def test_adm_embedding_formula():
    net = adm(label_dim=4, augment_dim=9)
    with torch.no_grad():
        net.map_augment.weight.normal_()
    noise, onehot, aug = torch.tensor([0.3, -1.0]), torch.eye(4)[:2], torch.randn(2, 9)
    half = net.map_noise.num_channels // 2
    phase = noise[:, None] * (1e-4) ** (torch.arange(half) / half)
    pos = torch.cat([phase.cos(), phase.sin()], dim=1)
    silu = torch.nn.functional.silu
    expected = silu(net.map_layer1(silu(net.map_layer0(pos + net.map_augment(aug)))) + net.map_label(onehot))
    assert_close(net.embedding(noise, onehot, aug), expected, torch.float32)


def test_label_dropout_all_or_nothing():
    net = randomized(song(label_dim=4, label_dropout=1.0))
    x, noise, labels, _ = inputs(label_dim=4)
    dropped = net.train()(x, noise, labels)
    assert_close(dropped, net.eval()(x, noise, torch.zeros_like(labels)), torch.float32)


@pytest.mark.parametrize("make", [song, adm])
def test_errors_name_the_argument(make):
    net = make(label_dim=4, augment_dim=9)
    x, noise, labels, aug = inputs(label_dim=4, augment_dim=9)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\]"):
        net(x[:, :, :8, :8], noise, labels)
    with pytest.raises(ValueError, match="class_labels are required"):
        net(x, noise, None)
    with pytest.raises(ValueError, match="class_labels must have shape"):
        net(x, noise, labels[:, :2])
    with pytest.raises(ValueError, match="noise_labels must have shape"):
        net(x, noise[:2], labels)
    with pytest.raises(ValueError, match="augment_labels must have shape"):
        net(x, noise, labels, aug[:, :3])


def test_unknown_encoder_type():
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        song(encoder_type="fancy")
