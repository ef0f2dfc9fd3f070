"""Cached teacher pairs for L_reg: end-point pairs and whole-trajectory pairs."""
import pytest
import torch

from sidkernels.sampler import sample_heun
from sidkernels.sign.pairs import cached_pairs, teacher_pairs


class ShrinkDenoiser(torch.nn.Module):
    """The exact denoiser of N(0, 0.25 I) with a teacher's attributes (1x2x2 images, unconditional)."""
    img_channels, img_resolution, label_dim = 1, 2, 0

    def forward(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return 0.25 * x / (0.25 + sigma ** 2)


def test_end_pairs_are_latents_and_heun_samples():
    pairs = teacher_pairs(ShrinkDenoiser(), 7, num_steps=5, seed=3, batch=4)
    assert pairs.inputs.shape == (7, 1, 1, 2, 2) and pairs.y.shape == (7, 1, 2, 2) and pairs.labels is None
    eps = torch.randn((4, 1, 2, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(pairs.z[:4], (80.0 * eps).float())
    torch.testing.assert_close(pairs.y[:4], sample_heun(ShrinkDenoiser(), eps, num_steps=5).float())


def test_trajectory_pairs_hold_every_heun_state(tmp_path):
    end = teacher_pairs(ShrinkDenoiser(), 5, num_steps=6, seed=1)
    traj = cached_pairs(ShrinkDenoiser(), 5, tmp_path, num_steps=6, seed=1, levels="trajectory")
    assert traj.inputs.shape == (5, 6, 1, 2, 2)
    assert torch.equal(traj.z, end.z) and torch.equal(traj.y, end.y)
    # each state lies on the exact ODE path of N(0, 0.25): x(t) = x_T sqrt(0.25 + t^2) / sqrt(0.25 + 80^2)
    ratio = (traj.inputs[:, 3] / traj.z).flatten()
    assert ratio.std() < 1e-4 and 0 < ratio.mean() < 1
    again = cached_pairs(ShrinkDenoiser(), 5, tmp_path, num_steps=6, seed=1, levels="trajectory")  # from disk
    assert len(list(tmp_path.glob("sign-pairs-*-trajectory.safetensors"))) == 1
    for a, b in zip(traj, again):
        assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(ValueError, match="levels must be one of"):
        teacher_pairs(ShrinkDenoiser(), 2, num_steps=2, levels="middle")
    with pytest.raises(ValueError, match="GiB of torch.float32 inputs .* lower reg_pairs"):
        teacher_pairs(ShrinkDenoiser(), 2**28, num_steps=40, levels="trajectory")


def test_half_precision_storage_rounds_the_inputs_and_halves_the_memory(tmp_path):
    from sidkernels.sign.pairs import input_bytes
    full = teacher_pairs(ShrinkDenoiser(), 5, num_steps=6, seed=1, levels="trajectory")
    half = cached_pairs(ShrinkDenoiser(), 5, tmp_path, num_steps=6, seed=1, levels="trajectory",
                        dtype=torch.float16)
    assert half.inputs.dtype == torch.float16 and half.y.dtype == torch.float32
    assert torch.equal(half.inputs, full.inputs.half()) and torch.equal(half.y, full.y)
    again = cached_pairs(ShrinkDenoiser(), 5, tmp_path, num_steps=6, seed=1, levels="trajectory",
                         dtype=torch.float16)
    assert again.inputs.dtype == torch.float16 and torch.equal(again.inputs, half.inputs)
    assert len(list(tmp_path.glob("sign-pairs-*-trajectory-float16.safetensors"))) == 1
    # CIFAR-10's trajectory pairs: over the limit in float32, under it in float16
    cifar = dict(num_steps=18, levels="trajectory")
    assert input_bytes(50_000, (3, 32, 32), dtype=torch.float32, **cifar) / 2**30 == pytest.approx(10.3, abs=0.05)
    assert input_bytes(50_000, (3, 32, 32), dtype=torch.float16, **cifar) / 2**30 == pytest.approx(5.15, abs=0.05)
    with pytest.raises(ValueError, match="store them as float16"):
        teacher_pairs(ShrinkDenoiser(), 2**29, num_steps=40, levels="trajectory", dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype .* must be one of"):
        teacher_pairs(ShrinkDenoiser(), 2, num_steps=2, dtype=torch.int8)
