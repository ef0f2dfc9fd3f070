"""Frechet Inception Distance of images, or of a one-step generator under EDM's protocol.

    sidkernels fid IMAGES --detector PATH --ref REF.npz [--num N]
    sidkernels fid --generator SNAPSHOT --detector PATH --ref REF.npz [--num 50000] [--seeds 0-149999]

IMAGES is a folder of images or a zip in EDM's dataset layout, or the npz that `sidkernels sample` writes.
With --generator the images are generated in batches and never written: --seeds is cut into sets of --num
seeds (default one set, 0..N-1), each set's FID is printed and the minimum reported, as the EDM and SiD
papers report.  --ref is EDM's fid-refs npz (mu, sigma) or one from `sidkernels fid-ref`; --detector and --ref
also take explicit URLs (downloaded once into the cache).  Prints a table, the detector's sha256 and, as the
last line, a JSON object (fid, num_images, detector_sha256, ...).  Under torchrun, ranks split each seed set.
--generator takes SiD generators (one step, G(z) = D(s z; s)); for SIGN's K-step sampler write the images with
`sidkernels sample --sign-steps K` and pass the npz.
"""
from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

DEFAULT_GENERATOR_NUM = 50_000


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="?", default=None,
                        help="folder or zip of images (EDM's dataset layout) or a `sidkernels sample` npz")
    parser.add_argument("--generator", default=None, metavar="SNAPSHOT",
                        help="one-step generator checkpoint (.safetensors, EDM/SiD .pkl, training state): FID of "
                             "its images, generated in batches")
    parser.add_argument("--detector", required=True, help="inception-2015-12-05.pt (TorchScript) or pytorch-fid's "
                        ".pth: a path, or a URL to download once into the cache")
    parser.add_argument("--ref", required=True, help="reference statistics npz (mu, sigma): a path or a URL")
    parser.add_argument("--num", type=int, default=None,
                        help=f"images per FID (IMAGES: the first N, default all; --generator: default "
                             f"{DEFAULT_GENERATOR_NUM})")
    parser.add_argument("--seeds", default=None, help="--generator: seeds, cut into sets of --num "
                        "(e.g. '0-149999' for three sets of 50000; default 0..num-1)")
    parser.add_argument("--init-sigma", type=float, default=None,
                        help="--generator: G(z) = D(s z; s) (default: the run's config.json, else 2.5)")
    parser.add_argument("--key", default=None, help="--generator: network inside a .pkl/.pt (default ema / G_ema)")
    parser.add_argument("--batch", type=int, default=250, help="images per generator/detector call (default 250)")
    parser.add_argument("--workers", type=int, default=None, help="IMAGES: decoding processes (default min(4, CPUs))")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def seed_sets(text: str | None, num: int) -> list[list[int]]:
    """``--seeds`` cut into consecutive sets of ``num`` seeds (default: one set 0..num-1)."""
    from sidkernels.commands.sample import parse_seeds

    if num < 2:
        raise ValueError(f"--num must be >= 2, got {num}")
    seeds = list(range(num)) if text is None else parse_seeds(text)
    if len(seeds) % num:
        raise ValueError(f"--seeds: {len(seeds)} seeds do not split into sets of --num {num}")
    return [seeds[i:i + num] for i in range(0, len(seeds), num)]


def seed_label(seeds: list[int]) -> str:
    """``"0-49999"`` for a contiguous set, else ``"N seeds from S"``."""
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return f"{len(seeds)} seeds from {seeds[0]}"


def _init_sigma(args) -> float:
    if args.init_sigma is not None:
        return args.init_sigma
    config = Path(args.generator).parent / "config.json"
    if config.is_file():
        return float(json.loads(config.read_text()).get("init_sigma", 2.5))
    return 2.5


def _device(args):
    import os

    import torch

    if args.device:
        return torch.device(args.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _generator_fids(args, detector, ref, device, progress: bool) -> tuple[list[tuple[str, int, float]], dict]:
    from sidkernels.checkpoint import load_checkpoint
    from sidkernels.metrics.fid import frechet_distance
    from sidkernels.metrics.generator import generator_statistics

    sets = seed_sets(args.seeds, args.num or DEFAULT_GENERATOR_NUM)
    net = load_checkpoint(args.generator, key=args.key)
    if not hasattr(net, "round_sigma"):
        raise ValueError(f"--generator: {args.generator} holds a bare {type(net).__name__}; a one-step generator "
                         f"is a preconditioned network (EDMPrecond, ...)")
    net = net.to(device).eval().requires_grad_(False)
    init_sigma = _init_sigma(args)
    rows = []
    for i, seeds in enumerate(sets):
        stats = generator_statistics(net, detector, seeds, init_sigma=init_sigma, batch=args.batch,
                                     progress=progress, desc=f"FID set {i + 1}/{len(sets)}")
        rows.append((f"seeds {seed_label(seeds)}", stats.num, frechet_distance(*stats.mean_cov(), *ref)))
    return rows, {"generator": args.generator, "init_sigma": init_sigma,
                  "seed_sets": [seed_label(s) for s in sets]}


def _images_fid(args, detector, ref, device, progress: bool) -> tuple[list[tuple[str, int, float]], dict]:
    from sidkernels.metrics.fid import feature_statistics, frechet_distance
    from sidkernels.metrics.sources import open_images

    source = open_images(args.images, name="IMAGES")
    num = len(source) if args.num is None else args.num
    stats = feature_statistics(detector.features, source.batches(args.batch, num=num, device=device,
                                                                  workers=args.workers),
                               dim=detector.feature_dim, device=device, total=num, progress=progress, desc="FID")
    return [(str(args.images), stats.num, frechet_distance(*stats.mean_cov(), *ref))], {"images": args.images}


def run(args) -> int:
    from sidkernels.metrics.detector import load_detector
    from sidkernels.metrics.fid import load_statistics
    from sidkernels.metrics.files import resolve

    if (args.images is None) == (args.generator is None):
        print("error: give exactly one of IMAGES and --generator SNAPSHOT", file=sys.stderr)
        return 2
    if args.generator is None and (args.seeds is not None or args.init_sigma is not None or args.key is not None):
        print("error: --seeds, --init-sigma and --key apply to --generator only", file=sys.stderr)
        return 2
    if args.generator is not None:
        from sidkernels.distill import dist

        device = _device(args)
        rank, _ = dist.init_from_env(device)
    else:
        device, rank = _device(args), 0
    progress = not args.no_progress and rank == 0
    t0 = time.perf_counter()
    try:
        if args.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {args.batch}")
        detector = load_detector(args.detector, device=device, progress=progress)
        ref_path = resolve(args.ref, name="--ref", progress=progress)
        mu, sigma, ref_extra = load_statistics(ref_path, name="--ref")
        if mu.shape[0] != detector.feature_dim:
            raise ValueError(f"--ref: {ref_path} has {mu.shape[0]} feature dimensions, the detector gives "
                             f"{detector.feature_dim}: statistics and detector do not belong together")
        measure = _generator_fids if args.generator is not None else _images_fid
        rows, extra = measure(args, detector, (mu, sigma), device, progress)
    except (ValueError, TypeError, OSError, pickle.UnpicklingError) as err:  # FileNotFoundError is an OSError
        print(f"error: {err}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0
    ref_sha = ref_extra.get("detector_sha256")
    if ref_sha is not None and ref_sha != detector.sha256:
        print(f"warning: {ref_path} was made with detector sha256 {ref_sha}, not this one: the FID compares "
              "features of two different detectors", file=sys.stderr)
    fids = [fid for _, _, fid in rows]
    width = max(len(name) for name, _, _ in rows + [("min", 0, 0.0)])
    print(f"{'source':<{width}}  {'images':>8}  {'FID':>10}")
    for name, n, fid in rows:
        print(f"{name:<{width}}  {n:>8}  {fid:>10.4f}")
    if len(rows) > 1:
        print(f"{'min':<{width}}  {'':>8}  {min(fids):>10.4f}")
    print(f"detector {detector.describe()}\nref {ref_path}")
    summary = {"fid": min(fids), "num_images": rows[0][1], "detector_sha256": detector.sha256,
               "detector": str(detector.path), "ref": str(ref_path), **extra, "seconds": time.perf_counter() - t0}
    if len(rows) > 1:
        summary["fids"] = fids
    print(json.dumps(summary))
    return 0
