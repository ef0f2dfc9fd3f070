"""FID statistics of a one-step generator, generated in batches straight into the detector (no image files).

EDM's protocol: one ``torch.Generator`` per seed on the network's device draws the latent and then, for
class-conditional networks, the class index (EDM's generator script and ``sidkernels sample`` do the same), so
an image depends only on its seed.  A seed set is one FID; the papers report several sets of 50,000 seeds and
their minimum.  Under ``torch.distributed`` rank r generates seeds ``r, r + world, ...`` of the set and the
statistics are summed over ranks in one collective.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from sidkernels.images import uint8_images
from sidkernels.metrics.detector import Detector
from sidkernels.metrics.fid import FeatureStatistics, feature_statistics

Generate = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]  # (unit latents, one-hot labels) -> [-1, 1]


def seeded_latents(seeds: Sequence[int], *, channels: int, resolution: int, label_dim: int,
                   device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unit-variance latents ``[len(seeds), channels, resolution, resolution]`` (fp32) and one-hot labels
    ``[len(seeds), label_dim]`` (None when ``label_dim`` is 0), each seed's drawn from its own generator."""
    gens = [torch.Generator(device=device).manual_seed(int(s) % (1 << 32)) for s in seeds]
    z = torch.stack([torch.randn((channels, resolution, resolution), generator=g, device=device) for g in gens])
    if not label_dim:
        return z, None
    classes = torch.cat([torch.randint(label_dim, (1,), generator=g, device=device) for g in gens])
    return z, torch.nn.functional.one_hot(classes, label_dim).float()


def one_step_generate(net: torch.nn.Module, init_sigma: float) -> Generate:
    """SiD's one-step generator ``G(z) = D(init_sigma z; init_sigma)`` as a :data:`Generate` function."""
    from sidkernels.distill.sid_losses import generate

    return lambda z, labels: generate(net, z, labels, init_sigma)


def generated_images(net: torch.nn.Module, seeds: Sequence[int], generate: Generate, *, batch: int,
                     device: torch.device | str) -> Iterator[torch.Tensor]:
    """uint8 ``[B, C, H, W]`` images of ``seeds`` in batches of ``batch``, on ``device``, under no_grad."""
    for start in range(0, len(seeds), batch):
        z, labels = seeded_latents(seeds[start:start + batch], channels=net.img_channels,
                                   resolution=net.img_resolution, label_dim=net.label_dim, device=device)
        with torch.no_grad():
            yield uint8_images(generate(z, labels))


def rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of torch.distributed, ``(0, 1)`` when it is not initialised."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        return tdist.get_rank(), tdist.get_world_size()
    return 0, 1


def generator_statistics(net: torch.nn.Module, detector: Detector, seeds: Sequence[int], *,
                         generate: Generate | None = None, init_sigma: float = 2.5, batch: int = 250,
                         progress: bool = True, desc: str = "FID") -> FeatureStatistics:
    """Feature statistics of the images of ``seeds`` (summed over all ranks when torch.distributed is
    initialised; every rank must call this).  ``generate`` defaults to :func:`one_step_generate`."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if len(seeds) < 2:
        raise ValueError(f"seeds: FID needs at least 2 images, got {len(seeds)} seeds")
    generate = generate or one_step_generate(net, init_sigma)
    device = next(net.parameters()).device
    rank, world = rank_world()
    mine = list(seeds)[rank::world]
    stats = feature_statistics(detector.features, generated_images(net, mine, generate, batch=batch, device=device),
                               dim=detector.feature_dim, device=detector.device, total=len(mine),
                               progress=progress and rank == 0, desc=desc)
    stats.all_reduce()
    return stats
