"""Compute FID reference statistics (EDM's fid-refs npz: mu, sigma in fp64) of a data set.

DATA is a folder or zip of images in EDM's dataset layout (what SiDA's --data takes), or the npz of
`sidkernels sample`.  --detector is the TorchScript Inception inception-2015-12-05.pt (or pytorch-fid's
pt_inception-2015-12-05-6726825d.pth), a path or an explicit URL (downloaded once into the cache).  The npz
also records num_images and the detector's sha256; the last line printed is a JSON summary.
"""
from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("data", help="folder or zip of images in EDM's dataset layout, or a `sidkernels sample` npz")
    parser.add_argument("--detector", required=True, help="inception-2015-12-05.pt (TorchScript) or pytorch-fid's "
                        ".pth: a path, or a URL to download once into the cache")
    parser.add_argument("--out", required=True, help="output statistics file (.npz)")
    parser.add_argument("--num", type=int, default=None, help="use the first N images (default: all)")
    parser.add_argument("--batch", type=int, default=250, help="images per detector call (default 250)")
    parser.add_argument("--workers", type=int, default=None, help="image decoding processes (default min(4, CPUs))")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from sidkernels.metrics.detector import load_detector
    from sidkernels.metrics.fid import feature_statistics, save_statistics
    from sidkernels.metrics.sources import open_images

    if not args.out.endswith(".npz"):
        print(f"error: --out must name a .npz file, got {args.out!r}", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        source = open_images(args.data, name="data")
        num = len(source) if args.num is None else args.num
        batches = source.batches(args.batch, num=num, device=device, workers=args.workers)
        detector = load_detector(args.detector, device=device, progress=not args.no_progress)
        stats = feature_statistics(detector.features, batches, dim=detector.feature_dim, device=device, total=num,
                                   progress=not args.no_progress, desc="fid-ref")
        mu, sigma = stats.mean_cov()
    except (ValueError, TypeError, OSError) as err:  # FileNotFoundError is an OSError
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_statistics(args.out, mu, sigma, num_images=stats.num, detector_sha256=detector.sha256)
    print(f"wrote statistics of {stats.num} images ({list(source.shape)}) to {args.out}\n"
          f"detector {detector.describe()}")
    print(json.dumps({"out": args.out, "num_images": stats.num, "feature_dim": detector.feature_dim,
                      "detector_sha256": detector.sha256}))
    return 0
