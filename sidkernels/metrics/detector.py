"""The FID feature detector, loaded from a file the user supplies (nothing ships with the package).

Formats:

* ``torchscript``: the TorchScript Inception-v3 ``inception-2015-12-05.pt`` that StyleGAN2-ADA, clean-fid, EDM
  and SiD use.  It is called on uint8 images ``[N, 3, H, W]`` as ``net(images, return_features=True)`` and
  returns the 2048-d pool features ``[N, 2048]``; it resizes to 299x299 internally.  Any TorchScript module
  with that calling convention is accepted (the tests use a small stand-in with fewer feature dimensions).
* ``pytorch-fid``: pytorch-fid's state dict ``pt_inception-2015-12-05-6726825d.pth``, run by our own module
  :class:`sidkernels.metrics.inception.FIDInceptionV3` (same parameter names and shapes, pytorch-fid's
  resizing and normalisation).

A TorchScript file is a program: loading it runs nothing, but computing features runs its code (as it does in
every FID implementation that uses it).  Load only files you trust; the sha256 printed beside every FID tells
which file it was.  State dicts are read with ``torch.load(weights_only=True)``, which refuses pickled code.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch

from sidkernels.metrics.files import file_sha256, resolve

EXPECTED = ("expected the TorchScript Inception-v3 'inception-2015-12-05.pt' (the detector of StyleGAN2-ADA, "
            "clean-fid and EDM: a TorchScript archive called as net(uint8 images [N, 3, H, W], "
            "return_features=True) -> [N, D]) or pytorch-fid's state dict 'pt_inception-2015-12-05-6726825d.pth'")
PROBE_SHAPE = (2, 3, 32, 32)  # the uint8 batch a detector is tried on when it is loaded


class DetectorError(ValueError):
    """A file that is not a usable FID detector."""


class Detector:
    """Features of uint8 images for FID.  ``features(images)`` -> fp64 ``[N, feature_dim]`` on ``device``."""

    def __init__(self, module: torch.nn.Module, *, path: Path, sha256: str, kind: str, device: torch.device):
        self.module = module.eval()
        self.path, self.sha256, self.kind, self.device = path, sha256, kind, device
        self.feature_dim = self._probe()

    def _probe(self) -> int:
        try:
            out = self._call(torch.zeros(PROBE_SHAPE, dtype=torch.uint8, device=self.device))
        except Exception as err:  # noqa: BLE001 - TorchScript raises its own error types
            raise DetectorError(f"detector: {self.path} does not run as a FID detector ({err}); {EXPECTED}") from None
        if not (isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == PROBE_SHAPE[0]
                and out.shape[1] > 0 and out.is_floating_point()):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DetectorError(f"detector: {self.path} returned {got} for {PROBE_SHAPE[0]} images, not float "
                                f"features [N, D]; {EXPECTED}")
        return int(out.shape[1])

    def _call(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(images, return_features=True)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """fp64 features ``[N, D]`` of uint8 images ``[N, 3, H, W]`` (``[N, 1, H, W]`` is repeated to 3
        channels, as EDM does), computed on the detector's device under ``torch.no_grad``."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 pixel values 0..255, got {images.dtype} (convert [-1, 1] "
                            f"images with sidkernels.images.uint8_images)")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, 3, H, W] (or [N, 1, H, W]), got {list(images.shape)}")
        if images.shape[0] == 0:
            return torch.zeros(0, self.feature_dim, dtype=torch.float64, device=self.device)
        images = images.to(self.device, non_blocking=True)
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        out = self._call(images)
        if tuple(out.shape) != (images.shape[0], self.feature_dim):
            raise DetectorError(f"detector returned {list(out.shape)} for {images.shape[0]} images, expected "
                                f"[{images.shape[0]}, {self.feature_dim}]")
        return out.to(torch.float64)

    def describe(self) -> str:
        """``name (kind, D-d features) sha256 HEX``: what is printed beside every FID."""
        return f"{self.path.name} ({self.kind}, {self.feature_dim}-d features) sha256 {self.sha256}"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _load_torchscript(path: Path, device: torch.device) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; the field's detector is one
            return torch.jit.load(str(path), map_location=device)
    except Exception as err:  # noqa: BLE001 - torch.jit raises RuntimeError subclasses of its own
        raise DetectorError(f"detector: {path} is not a loadable TorchScript archive ({err}); {EXPECTED}") from None


def _load_state_dict(path: Path, device: torch.device) -> torch.nn.Module:
    from sidkernels.metrics.inception import FIDInceptionV3

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # notices about the pickle protocol of a file refused anyway
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle and zip readers raise many types
        raise DetectorError(f"detector: {path} is neither TorchScript nor a readable state dict ({err}); "
                            f"{EXPECTED}") from None
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DetectorError(f"detector: {path} holds a {type(state).__name__}, not a state dict of tensors; {EXPECTED}")
    return FIDInceptionV3.from_state_dict(state, source=str(path)).to(device)


def load_detector(spec, *, device: torch.device | str = "cpu", progress: bool = True) -> Detector:
    """The detector in file ``spec`` (a path, or a URL given explicitly: downloaded once into the cache), on
    ``device``.  Raises :class:`DetectorError` (a ValueError) naming the expected formats for any other file."""
    device = torch.device(device)
    path = resolve(spec, name="detector", progress=progress)
    if _is_torchscript(path):
        module, kind = _load_torchscript(path, device), "torchscript"
    else:
        module, kind = _load_state_dict(path, device), "pytorch-fid"
    return Detector(module, path=path, sha256=file_sha256(path), kind=kind, device=device)
