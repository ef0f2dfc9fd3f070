"""The fake-score step's augmentation (sidkernels.distill.augment): label distributions, each transform's
geometry on pixel-exact cases, and its use by the SiD fake-score objective."""
import math

import pytest
import torch

from sidkernels.distill import augment as A
from sidkernels.distill.config import preset_config
from sidkernels.distill.sid_losses import fake_score_loss_on_generator
from sidkernels.distill.mixture_teacher import mixture_network


def _params(n=1, **values):
    params = dict(xflip=torch.zeros(n), yflip=torch.zeros(n), scale=torch.zeros(n), rotate=torch.zeros(n),
                  aniso=torch.zeros(n), aniso_dir=torch.zeros(n), translate=torch.zeros(2, n))
    params.update({k: torch.as_tensor(v, dtype=torch.float32).reshape(params[k].shape) for k, v in values.items()})
    return params


def _image(h=12, w=12, c=2):
    return torch.randn(1, c, h, w)


def test_p0_is_the_identity_with_zero_labels_except_the_x_flip_coin():
    x = torch.randn(64, 3, 8, 8)
    y, labels = A.augment(x, 0.0)
    assert labels.shape == (64, A.AUGMENT_DIM) and labels.dtype == torch.float32
    assert (labels[:, 1:] == 0).all()
    flipped = labels[:, 0] == 1
    assert torch.equal(y[~flipped], x[~flipped]) and torch.equal(y[flipped], x[flipped].flip(3))


def test_label_distributions():
    torch.manual_seed(0)
    n, p = 40_000, 0.12
    labels = A.augment_labels(A.draw_augment_params(n, p, "cpu"))
    assert abs(labels[:, 0].mean() - 0.5) < 0.02                 # x-flip: a fair coin whatever p
    assert abs(labels[:, 1].mean() - p / 2) < 0.01               # y-flip: applied w.p. p, then a coin
    for col in (2, 4, 5, 7, 8):                                   # gated N(0,1) / angle terms
        active = labels[:, col] != 0
        assert abs(active.float().mean() - p) < 0.01, col
    scale = labels[labels[:, 2] != 0, 2]
    assert abs(scale.mean()) < 0.05 and abs(scale.std() - 1) < 0.05
    rot = labels[labels[:, 4] != 0]
    angle = torch.atan2(rot[:, 4], rot[:, 3] + 1)
    assert abs(angle.abs().mean() - math.pi / 2) < 0.08          # uniform on (-pi, pi)
    torch.testing.assert_close((rot[:, 3] + 1) ** 2 + rot[:, 4] ** 2, torch.ones(len(rot)))
    aniso = labels[labels[:, 5] != 0]
    assert abs((aniso[:, 5] ** 2 + aniso[:, 6] ** 2).mean() - 1) < 0.1  # w^2 (cos^2 + sin^2), E w^2 = 1
    translate = labels[labels[:, 7] != 0, 7:]
    assert abs(translate.std() - 1) < 0.05


def test_flips_are_exact():
    x = _image()
    assert torch.equal(A.apply_augment(x, _params(xflip=1)), x.flip(3))
    assert torch.equal(A.apply_augment(x, _params(yflip=1)), x.flip(2))


def test_rotation_by_a_quarter_turn_follows_edm_orientation():
    """t = pi/2: output (x, y) samples input R(t)(x, y) = (-y, x) about the centre (x right, y down)."""
    x = _image()
    out = A.apply_augment(x, _params(rotate=math.pi / 2))
    # input pixel (row i, col j) lands at output (row j', col ...): out[r, c] = x[c, W-1-r] for the centred map
    expected = x.flip(3).transpose(2, 3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    labels = A.augment_labels(_params(rotate=math.pi / 2))
    torch.testing.assert_close(labels[0, 3:5], torch.tensor([-1.0, 1.0]))


def test_translation_shifts_by_whole_pixels():
    h = w = 16
    x = _image(h, w)
    u = 2 / (w * A.TRANSLATE_STD)  # 2 pixels right, 1 pixel up
    v = -1 / (h * A.TRANSLATE_STD)
    out = A.apply_augment(x, _params(translate=[u, v]))
    torch.testing.assert_close(out[..., 0:h - 1, 2:], x[..., 1:h, : w - 2], atol=1e-5, rtol=0)


def test_scale_zooms_about_the_centre():
    """s = 2 (w = 5): output q samples the input at q / 2, so the centre 2x2 pixels spread over 4x4."""
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3:5, 3:5] = 1.0
    out = A.apply_augment(x, _params(scale=1 / A.SCALE_STD))
    assert out[..., 3:5, 3:5].min() > 0.9            # still bright at the centre
    assert out[..., 2, 2] > 0.5 and out[..., 1, 1] < 0.1  # grown to about 4x4
    torch.testing.assert_close(out, out.flip(2).flip(3))  # symmetric about the centre


def test_aniso_stretches_along_its_direction_and_shrinks_across():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, :] = 1.0  # a horizontal bar, 8 rows thick

    def rows(direction):  # bright rows of the central column, away from the reflected borders
        out = A.apply_augment(x, _params(aniso=1 / A.ANISO_STD, aniso_dir=direction))  # factor 2
        return int((out[0, 0, 4:28, 16] > 0.5).sum())

    assert rows(math.pi / 2) == 16  # stretched x2 along the vertical
    assert rows(0.0) == 4           # stretched along the horizontal: x1/2 across it


def test_keeps_dtype_device_and_layout():
    x = torch.randn(4, 3, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    y, labels = A.augment(x, 1.0)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_fake_score_objective_feeds_augmented_samples_and_their_labels():
    net = mixture_network(augment_dim=A.AUGMENT_DIM)
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, sigma, labels=None, augment_labels=None, *, net_input=None):
            seen["labels"] = augment_labels
            return net(x, sigma, labels, augment_labels=augment_labels, net_input=net_input)

    z = torch.randn(32, 1, 8, 8)
    kwargs = dict(init_sigma=2.5, scale=1.0, net_dtype=torch.float32)
    fake_score_loss_on_generator(net, Spy(), z, None, **kwargs)
    assert seen["labels"] is None
    loss = fake_score_loss_on_generator(net, Spy(), z, None, augment_p=1.0, **kwargs)
    assert seen["labels"].shape == (32, A.AUGMENT_DIM) and (seen["labels"][:, 2:] != 0).any()
    assert torch.isfinite(loss)


def test_presets_carry_the_official_probabilities():
    assert preset_config("cifar10-uncond").augment == 0.12
    assert preset_config("ffhq64").augment == 0.15 and preset_config("afhq64").augment == 0.15
    assert preset_config("imagenet64").augment == 0 and preset_config("mixture").augment == 0
    with pytest.raises(ValueError, match=r"augment \(a probability\) must be in \[0, 1\]"):
        preset_config("mixture", augment=1.5).validate()


def test_augment_needs_a_network_with_augment_labels():
    from sidkernels.distill import SiDTrainer
    cfg = preset_config("mixture", teacher="random", augment=0.1, kimg=0.1, device="cpu")
    with pytest.raises(ValueError, match="augment=0.1 needs a teacher .* augment_dim 9"):
        SiDTrainer(cfg, progress=False)


def test_sign_rejects_augment():
    from sidkernels.sign import sign_config
    assert sign_config("cifar10-uncond").augment == 0
    with pytest.raises(ValueError, match="SIGN's fake-score step has no augmentation"):
        sign_config("mixture", augment=0.1).validate()


def test_traces_without_graph_breaks():
    """The trainer compiles the fake-score objective with fullgraph=True, augmentation included."""
    compiled = torch.compile(A.augment, backend="eager", fullgraph=True, dynamic=False)
    y, labels = compiled(torch.randn(4, 3, 8, 8), 0.5)
    assert y.shape == (4, 3, 8, 8) and labels.shape == (4, A.AUGMENT_DIM)
