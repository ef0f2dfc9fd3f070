"""Loading the FID detector: TorchScript calling convention, sha256, explicit-URL downloads, clear refusals."""
import hashlib
import os
import pickle
import urllib.request

import pytest
import torch

from sidkernels.metrics.detector import DetectorError, load_detector
from sidkernels.metrics.files import cached_download_path
from tests.metrics.standin import (STANDIN_DIM, FeatureMaps, NoFeaturesKeyword, StandInDetector, save_torchscript,
                                   standin_detector_file)


@pytest.fixture(scope="module")
def standin_path(tmp_path_factory):
    return standin_detector_file(tmp_path_factory.mktemp("detector"))


def test_torchscript_detector_gives_fp64_features_and_its_sha256(standin_path):
    det = load_detector(standin_path)
    assert det.kind == "torchscript" and det.feature_dim == STANDIN_DIM
    assert det.sha256 == hashlib.sha256(standin_path.read_bytes()).hexdigest()
    assert det.sha256 in det.describe() and standin_path.name in det.describe()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    feats = det.features(images)
    assert feats.dtype == torch.float64 and feats.shape == (5, STANDIN_DIM)
    with torch.no_grad():  # the same module run eagerly, outside TorchScript
        eager = StandInDetector()(images, return_features=True)
    torch.testing.assert_close(feats, eager.double(), rtol=1e-5, atol=1e-6)
    gray = images[:, :1]
    torch.testing.assert_close(det.features(gray), det.features(gray.repeat(1, 3, 1, 1)))  # EDM: 1 -> 3 channels
    assert det.features(images[:0]).shape == (0, STANDIN_DIM)


def test_bad_images_are_refused_by_name(standin_path):
    det = load_detector(standin_path)
    with pytest.raises(TypeError, match="images must be uint8"):
        det.features(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"images must be \[N, 3, H, W\]"):
        det.features(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must be \[N, 3, H, W\]"):
        det.features(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        det.features([[0]])


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_files_that_are_not_detectors_get_a_clear_refusal(tmp_path):
    with pytest.raises(FileNotFoundError, match="detector: no such file"):
        load_detector(tmp_path / "inception-2015-12-05.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DetectorError, match="expected the TorchScript Inception-v3 'inception-2015-12-05.pt'"):
        load_detector(text)
    marker = tmp_path / "ran"
    hostile = tmp_path / "inception-2015-12-05.pkl"
    hostile.write_bytes(pickle.dumps({"detector": Payload(marker)}))
    with pytest.raises(DetectorError, match="neither TorchScript nor a readable state dict"):
        load_detector(hostile)
    assert not marker.exists(), "loading a pickle ran its code"
    with pytest.raises(DetectorError, match="does not run as a FID detector"):
        load_detector(save_torchscript(NoFeaturesKeyword(), tmp_path / "plain.pt"))
    with pytest.raises(DetectorError, match=r"returned \[2, 3, 32, 32\] .* not float features"):
        load_detector(save_torchscript(FeatureMaps(), tmp_path / "maps.pt"))
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(DetectorError, match="not pytorch-fid's Inception .*missing"):
        load_detector(other)
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(DetectorError, match="holds a list, not a state dict"):
        load_detector(tmp_path / "list.pth")


def test_a_url_is_downloaded_once_into_the_cache_and_paths_never_are(standin_path, monkeypatch):
    real_urlopen = urllib.request.urlopen
    opened = []

    def counting_urlopen(url, *args, **kwargs):
        opened.append(url)
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", counting_urlopen)
    url = standin_path.resolve().as_uri()  # file:// keeps the test offline
    cached = cached_download_path(url)
    assert not cached.exists()
    assert os.environ["SIDKERNELS_CACHE"] in str(cached)  # the hermetic test cache (tests/conftest.py)
    det = load_detector(url, progress=False)
    assert opened == [url] and det.path == cached and cached.read_bytes() == standin_path.read_bytes()
    assert not list(cached.parent.glob("*.tmp"))
    assert load_detector(url, progress=False).sha256 == det.sha256 and opened == [url]  # second time: the cache
    load_detector(standin_path)  # a path is never looked up online
    assert opened == [url]
    with pytest.raises(OSError, match="detector: could not download"):
        load_detector((standin_path.parent / "missing.pt").resolve().as_uri(), progress=False)
