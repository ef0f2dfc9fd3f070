"""Kernel results do not depend on the block size or how a sample is split over programs."""
import pytest
import torch

from sidkernels.kernels import distance, fake_score_loss, noise, sid_loss
from sidkernels.kernels._common import launch_config

BLOCKS = [256, 1024, 4096]


def test_launch_config_splits_long_samples():
    block, num_warps, chunks = launch_config(1, 3 * 256 * 256, torch.device("cpu"))
    assert block * chunks >= 3 * 256 * 256 and chunks > 1 and 1 <= num_warps <= 8
    assert launch_config(4, 17, torch.device("cpu"))[0] == 32


def test_noise_is_block_invariant(device):
    x = torch.randn(2, 3000, device=device)
    sigma = torch.rand(2, device=device) + 0.1
    seed = torch.tensor([2024], device=device)
    results = []
    for block in BLOCKS:
        xt, net, eps = torch.empty_like(x), torch.empty_like(x, dtype=torch.bfloat16), torch.empty_like(x)
        noise.add_noise_fwd(x, sigma, seed, xt, net, eps, 0, 0.5, block=block)
        results.append((xt, net, eps))
    for xt, net, eps in results[1:]:
        assert torch.equal(xt, results[0][0]) and torch.equal(net, results[0][1]) and torch.equal(eps, results[0][2])


@pytest.mark.parametrize("block", BLOCKS)
def test_sid_loss_split_matches_single_block(block, device):
    a, b, x = (torch.randn(3, 3000, device=device) for _ in range(3))
    x[1, 5] = float("nan")

    def run(blk):
        out = [torch.empty_like(a) for _ in range(3)] + [torch.empty(3, device=device) for _ in range(2)]
        sid_loss.sid_loss_fwd(a, b, x, *out, alpha=1.2, clip=1e-5, normalize=True, block=blk)
        return out

    split, whole = run(block), run(4096)
    for s, w in zip(split[:3], whole[:3]):
        torch.testing.assert_close(s, w, rtol=0, atol=0, equal_nan=True)  # elementwise: bitwise identical
    for s, w in zip(split[3:], whole[3:]):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-6)  # partial sums differ only in order
    assert split[3][1] == 0 and split[4][1] == 0


def test_fake_loss_split_is_deterministic(device):
    den, y = torch.randn(2, 5000, device=device), torch.randn(2, 5000, device=device)
    sigma = torch.rand(2, device=device) + 0.1

    def run():
        r, loss, scale = torch.empty_like(den), torch.empty(2, device=device), torch.empty(2, device=device)
        fake_score_loss.fake_loss_fwd(den, y, sigma, r, loss, scale, 0.5, block=256)
        return loss

    first = run()
    assert all(torch.equal(first, run()) for _ in range(2))
    lam = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(first, lam * ((den - y) ** 2).sum(1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_distance_split_matches_single_block(kind, device):
    """Forward: the split reduction equals one block up to summation order, and is deterministic; backward:
    elementwise, so bitwise the same for every block size."""
    a, b = torch.randn(3, 3000, device=device), torch.randn(3, 3000, device=device)
    go = torch.rand(3, device=device)

    def run(blk):
        dist, scale = torch.empty(3, device=device), torch.empty(3, device=device)
        distance.distance_fwd(a, b, dist, scale, kind, 0.03, block=blk)
        ga, gb = torch.empty_like(a), torch.empty_like(b, dtype=torch.bfloat16)
        distance.distance_bwd(go, scale, a, b, ga, gb, kind, block=blk)
        return dist, scale, ga, gb

    split, again, whole = run(256), run(256), run(4096)
    assert all(torch.equal(s, t) for s, t in zip(split, again))
    for s, w in zip(split[:2], whole[:2]):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-6)
    ga_ref = go[:, None] * split[1][:, None] * ((a - b).sign() if kind == 1 else a - b)
    torch.testing.assert_close(split[2], ga_ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(split[3].float(), -split[2], rtol=2 ** -7, atol=0)  # one bf16 rounding
