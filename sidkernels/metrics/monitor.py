"""FID of G_ema during a distillation run, for the image presets (the loop calls :meth:`FIDMonitor.report` at
each of its reports).

Every ``every_kimg`` thousand images (and at the end of the run) the monitor generates ``num`` one-step images
from fixed seeds ``0 .. num-1`` (the same images' latents at every evaluation, so the curve is not noisier
than the model), computes their FID against the reference statistics and adds ``fid``, ``fid_num`` and
``fid_detector_sha256`` to the report's record.  Under torch.distributed each rank generates its own share of
the seeds and the statistics are summed in one collective (:func:`sidkernels.metrics.generator.
generator_statistics`).  When the FID improves, rank 0 writes G_ema to ``network-snapshot-best.safetensors``
(+ ``.json``; atomic, :func:`sidkernels.checkpoint.save_network`).  The best value survives a resume: it is
read back from the run's ``metrics.jsonl`` (rows of the same detector and image count), as long as the best
snapshot is still there.  ``sidkernels fid --generator RUN/network-snapshot-best.safetensors --num N`` gives
the same FID for the best snapshot (same seeds; exactly when the loop generates in fp32).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from sidkernels.metrics.detector import Detector, load_detector
from sidkernels.metrics.fid import frechet_distance, load_statistics
from sidkernels.metrics.files import resolve
from sidkernels.metrics.generator import Generate, generator_statistics, rank_world

BEST_SNAPSHOT = "network-snapshot-best.safetensors"
KIMG_TOL = 1e-9  # relative round-off allowed when a kimg count meets a multiple of every_kimg


class FIDMonitor:
    """Periodic FID of a generator with best-snapshot keeping; see the module docstring.

    ``start_kimg`` is where the run (re)starts: the first evaluation is at the next multiple of
    ``every_kimg`` after it.  ``log`` receives one line per evaluation (rank 0 only).
    """

    def __init__(self, detector: Detector, ref_mu, ref_sigma, *, every_kimg: float, num: int, out, batch: int = 250,
                 init_sigma: float = 2.5, start_kimg: float = 0.0, progress: bool = False, log=print,
                 ref_name: str = "fid_ref"):
        if not every_kimg > 0:
            raise ValueError(f"fid_every_kimg must be > 0, got {every_kimg}")
        if num < 2:
            raise ValueError(f"fid_num must be >= 2, got {num}")
        if ref_mu.shape[0] != detector.feature_dim:
            raise ValueError(f"{ref_name}: the reference statistics have {ref_mu.shape[0]} feature dimensions, the "
                             f"detector {detector.describe()} gives {detector.feature_dim}: were they made with "
                             f"another detector?")
        self.detector, self.ref_mu, self.ref_sigma = detector, ref_mu, ref_sigma
        self.every_kimg, self.num, self.batch, self.init_sigma = every_kimg, num, batch, init_sigma
        self.out, self.progress = Path(out), progress
        self.rank = rank_world()[0]
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.next_kimg = self._multiple_after(start_kimg)
        self.best = self._best_so_far()

    @classmethod
    def from_config(cls, cfg, *, device: torch.device | str, start_kimg: float = 0.0, log=print,
                    progress: bool = False) -> FIDMonitor | None:
        """The monitor a run configuration asks for (``fid_every_kimg``, ``fid_num``, ``detector``, ``fid_ref``,
        ``out``), or None when FID is off.  Loads the detector and the reference before training starts."""
        if cfg.fid_every_kimg is None:
            return None
        detector = load_detector(cfg.detector, device=device, progress=progress)
        mu, sigma, _ = load_statistics(resolve(cfg.fid_ref, name="fid_ref", progress=progress), name="fid_ref")
        return cls(detector, mu, sigma, every_kimg=cfg.fid_every_kimg, num=cfg.fid_num, out=cfg.out,
                   init_sigma=cfg.init_sigma, start_kimg=start_kimg, log=log, progress=progress)

    def _multiple_after(self, kimg: float) -> float:
        """The first multiple of every_kimg strictly after ``kimg`` (kimg itself counts as reached)."""
        return (math.floor(kimg / self.every_kimg + KIMG_TOL) + 1) * self.every_kimg

    def _best_so_far(self) -> float:
        """The lowest FID of this detector and image count in the run's metrics.jsonl (inf when there is none,
        or when the best snapshot is gone)."""
        from sidkernels.distill.report import read_jsonl  # here: sidkernels.distill imports this module

        if not (self.out / BEST_SNAPSHOT).is_file():
            return math.inf
        rows = [r for r in read_jsonl(self.out / "metrics.jsonl") if isinstance(r.get("fid"), (int, float))
                and r.get("fid_detector_sha256") == self.detector.sha256 and r.get("fid_num") == self.num]
        return min((float(r["fid"]) for r in rows if math.isfinite(r["fid"])), default=math.inf)

    def due(self, kimg: float, final: bool = False) -> bool:
        """Whether the report at ``kimg`` evaluates FID (at or past the next multiple of every_kimg, or final)."""
        return final or kimg >= self.next_kimg - KIMG_TOL * self.every_kimg

    def statistics(self, net: torch.nn.Module, generate: Generate | None = None):
        """``(mu, sigma)`` of ``net``'s one-step images of seeds 0..num-1 (every rank must call this)."""
        stats = generator_statistics(net, self.detector, range(self.num), generate=generate,
                                     init_sigma=self.init_sigma, batch=self.batch, progress=self.progress, desc="FID")
        return stats.mean_cov()

    def evaluate(self, net: torch.nn.Module, generate: Generate | None = None) -> float:
        """FID of ``net``'s one-step images of seeds 0..num-1 (every rank must call this)."""
        return frechet_distance(*self.statistics(net, generate), self.ref_mu, self.ref_sigma)

    def report(self, record: dict, net: torch.nn.Module, generate: Generate | None = None, *,
               final: bool = False) -> dict:
        """At a report of the loop: when due, evaluate ``net`` (G_ema), add ``fid``, ``fid_num``,
        ``fid_detector_sha256`` and ``fid_s`` (seconds) to ``record``, keep the best snapshot; returns
        ``record``.  ``generate(z, labels)`` makes [-1, 1] images from unit latents (default: SiD's one step
        at ``init_sigma``); ``record["kimg"]`` is the run's progress.  A FID that cannot be computed (both
        square roots failed) is logged and recorded as NaN; the run goes on."""
        kimg = float(record["kimg"])
        if not self.due(kimg, final):
            return record
        t0 = time.perf_counter()
        mu, sigma = self.statistics(net, generate)
        try:
            fid = frechet_distance(mu, sigma, self.ref_mu, self.ref_sigma)
        except ValueError as err:  # a degenerate square root must not end a long run: log it, record NaN
            self.log(f"FID at {kimg:g} kimg failed: {err}")
            fid = math.nan
        self.next_kimg = self._multiple_after(kimg)
        improved = fid < self.best
        if improved:
            self.best = fid
            if self.rank == 0:
                from sidkernels.checkpoint import save_network

                save_network(net, self.out / BEST_SNAPSHOT)
        record.update(fid=fid, fid_num=self.num, fid_detector_sha256=self.detector.sha256,
                      fid_s=time.perf_counter() - t0)
        self.log(f"FID {fid:.4f} at {kimg:g} kimg ({self.num} images; best {self.best:.4f}"
                 f"{', saved ' + BEST_SNAPSHOT if improved else ''}); detector {self.detector.describe()}")
        return record
