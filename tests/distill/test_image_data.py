"""Real images in EDM's dataset layout: folders and zips, labels, clear errors, a seeded stream."""
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from sidkernels.distill.image_data import ImageDataset, RealImages


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_dataset(root, n=6, size=8, channels=3, labels=True, as_zip=False):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = (size, size, channels) if channels == 3 else (size, size)
    files = {f"00000/img{i:08d}.png": png(rng.integers(0, 256, shape, dtype=np.uint8)) for i in range(n)}
    if labels:
        files["dataset.json"] = json.dumps({"labels": [[name, i % 3] for i, name in enumerate(
            sorted(k for k in files if k.endswith(".png")))]}).encode()
    if as_zip:
        path = root / "data.zip"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
        return path, files
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root, files


@pytest.mark.parametrize("as_zip", [False, True])
def test_folder_and_zip_give_the_images_and_labels(tmp_path, as_zip):
    path, files = make_dataset(tmp_path, as_zip=as_zip)
    data = ImageDataset(path, resolution=8, channels=3)
    assert len(data) == 6
    image, label = data[4]
    expected = np.asarray(Image.open(io.BytesIO(files["00000/img00000004.png"]))).transpose(2, 0, 1)
    assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(expected.copy()))
    assert label == 4 % 3


def test_grayscale_images_have_one_channel(tmp_path):
    path, _ = make_dataset(tmp_path, channels=1, labels=False)
    image, label = ImageDataset(path, resolution=8, channels=1)[0]
    assert image.shape == (1, 8, 8) and label == -1


def test_stream_is_seeded_scaled_and_one_hot(tmp_path):
    path, _ = make_dataset(tmp_path)
    data = ImageDataset(path, resolution=8, channels=3)
    a = RealImages(data, 4, torch.device("cpu"), label_dim=3, seed=1, workers=0)
    b = RealImages(data, 4, torch.device("cpu"), label_dim=3, seed=1, workers=0)
    (xa, la), (xb, lb) = a.next(), b.next()
    assert torch.equal(xa, xb) and torch.equal(la, lb)
    assert xa.dtype == torch.float32 and xa.shape == (4, 3, 8, 8) and -1 <= xa.min() and xa.max() <= 1
    assert la.shape == (4, 3) and torch.equal(la.sum(1), torch.ones(4))
    assert a.labels(5).shape == (5, 3)
    assert RealImages(data, 4, torch.device("cpu"), label_dim=0, seed=1, workers=0).next()[1] is None


def test_bad_data_is_refused_with_the_argument_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data: no such"):
        ImageDataset(tmp_path / "missing", resolution=8, channels=3)
    path, _ = make_dataset(tmp_path / "a", labels=False)
    with pytest.raises(ValueError, match=r"data: images must be \[3, 16, 16\]"):
        ImageDataset(path, resolution=16, channels=3)
    unlabelled = ImageDataset(path, resolution=8, channels=3)
    with pytest.raises(ValueError, match="class-conditional"):
        RealImages(unlabelled, 2, torch.device("cpu"), label_dim=10, seed=0, workers=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageDataset(tmp_path / "empty", resolution=8, channels=3)
    labelled, _ = make_dataset(tmp_path / "b")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        RealImages(ImageDataset(labelled, resolution=8, channels=3), 2, torch.device("cpu"), label_dim=2, seed=0,
                   workers=0)
