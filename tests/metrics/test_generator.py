"""EDM-protocol generation for FID: per-seed latents (the same images as `sidkernels sample --one-step`),
batch-invariant statistics."""
import numpy as np
import pytest
import torch

from sidkernels.checkpoint import save_network
from sidkernels.cli import main
from sidkernels.metrics.detector import load_detector
from sidkernels.metrics.generator import generated_images, generator_statistics, one_step_generate, seeded_latents
from tests.metrics.standin import standin_detector_file, tiny_generator


def test_images_match_sidkernels_sample_one_step(tmp_path):
    net = tiny_generator("cifar10-cond")
    ckpt = save_network(net, tmp_path / "g.safetensors")[0]
    assert main(["sample", str(ckpt), "--seeds", "3-9,40", "--one-step", "--outdir", str(tmp_path / "s"),
                 "--batch", "3", "--device", "cpu", "--no-progress"]) == 0
    with np.load(tmp_path / "s" / "samples.npz") as f:
        expected = torch.from_numpy(f["images"]).permute(0, 3, 1, 2)
    got = torch.cat(list(generated_images(net, [3, 4, 5, 6, 7, 8, 9, 40], one_step_generate(net, 2.5), batch=5,
                                          device="cpu")))
    assert got.dtype == torch.uint8 and torch.equal(got, expected)


def test_latents_depend_only_on_their_seed():
    z, labels = seeded_latents([5, 6, 7], channels=3, resolution=4, label_dim=10, device="cpu")
    z1, labels1 = seeded_latents([7], channels=3, resolution=4, label_dim=10, device="cpu")
    assert torch.equal(z[2:], z1) and torch.equal(labels[2:], labels1)
    assert labels.shape == (3, 10) and torch.equal(labels.sum(1), torch.ones(3))
    gen = torch.Generator().manual_seed(6)
    assert torch.equal(z[1], torch.randn((3, 4, 4), generator=gen))  # latent first, from the seed's own generator
    assert labels[1].argmax() == torch.randint(10, (1,), generator=gen).item()
    assert seeded_latents([1], channels=1, resolution=2, label_dim=0, device="cpu")[1] is None


def test_statistics_do_not_depend_on_the_batch(tmp_path):
    net = tiny_generator()
    det = load_detector(standin_detector_file(tmp_path))
    a = generator_statistics(net, det, range(70), batch=9, progress=False)
    b = generator_statistics(net, det, range(70), batch=70, progress=False)
    assert a.num == b.num == 70
    for x, y in zip(a.mean_cov(), b.mean_cov()):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 images"):
        generator_statistics(net, det, [0], progress=False)
