"""Sample-quality metrics of image generators: FID with the detector the field uses, supplied by the user.

    sidkernels.metrics.fid        frechet_distance, FeatureStatistics, save/load_statistics (EDM's npz)
    sidkernels.metrics.detector   load_detector (TorchScript inception-2015-12-05.pt or pytorch-fid's .pth)
    sidkernels.metrics.sources    open_images (folder or zip in EDM's layout, the npz of `sidkernels sample`)
    sidkernels.metrics.generator  generator_statistics (EDM's protocol: per-seed latents, batched, no files)
    sidkernels.metrics.monitor    FIDMonitor (FID during distillation, best snapshot)

Nothing here imports :mod:`sidkernels.distill` at module level (the trainer imports the monitor).
"""
from sidkernels.metrics.detector import Detector, DetectorError, load_detector
from sidkernels.metrics.fid import FeatureStatistics, FIDWarning, frechet_distance, load_statistics, save_statistics

__all__ = ["Detector", "DetectorError", "FIDWarning", "FeatureStatistics", "frechet_distance", "load_detector",
           "load_statistics", "save_statistics"]
