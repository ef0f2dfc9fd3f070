"""Image sources for FID: folder, EDM zip and sample npz give the same uint8 batches; bad inputs are named."""
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from sidkernels.metrics.sources import open_images


def write_edm_folder(images: np.ndarray, root):
    """uint8 [N, H, W, C] images as EDM's dataset_tool lays them out: 00000/img00000000.png, ..."""
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        folder = root / f"{i // 1000:05d}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"img{i:08d}.png")
    return root


def zip_folder(root, path):
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(root.rglob("*.png")):
            z.write(f, f.relative_to(root).as_posix())
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (23, 6, 5, 3), dtype=np.uint8)  # non-square on purpose


def collect(source, **kw):
    return torch.cat(list(source.batches(4, workers=0, **kw)))


def test_folder_zip_and_npz_give_the_same_batches(images, tmp_path):
    folder = write_edm_folder(images, tmp_path / "folder")
    np.savez(tmp_path / "samples.npz", images=images, seeds=np.arange(23), labels=np.full(23, -1))
    expected = torch.from_numpy(images).permute(0, 3, 1, 2)
    for path in (folder, zip_folder(folder, tmp_path / "data.zip"), tmp_path / "samples.npz"):
        source = open_images(path)
        assert len(source) == 23 and source.shape == (3, 6, 5)
        got = collect(source)
        assert got.dtype == torch.uint8 and torch.equal(got, expected), path
        assert torch.equal(collect(source, num=9), expected[:9])
    loaded = torch.cat(list(open_images(folder).batches(5, workers=1)))  # decoded by a worker process
    assert torch.equal(loaded, expected)


def test_grayscale_images(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    source = open_images(write_edm_folder(gray, tmp_path / "gray"))
    assert source.shape == (1, 4, 4) and torch.equal(collect(source), torch.from_numpy(gray).permute(0, 3, 1, 2))


def test_bad_image_inputs_name_the_argument(images, tmp_path):
    with pytest.raises(FileNotFoundError, match="IMAGES: no such folder, zip or npz"):
        open_images(tmp_path / "missing", name="IMAGES")
    np.savez(tmp_path / "float.npz", images=images.astype(np.float32))
    with pytest.raises(ValueError, match=r"IMAGES: .* 'images' must be non-empty uint8 \[N, H, W, C\], got float32"):
        open_images(tmp_path / "float.npz", name="IMAGES")
    np.savez(tmp_path / "chw.npz", images=images[0])
    with pytest.raises(ValueError, match=r"must be non-empty uint8 \[N, H, W, C\], got uint8 \[6, 5, 3\]"):
        open_images(tmp_path / "chw.npz")
    np.savez(tmp_path / "other.npz", x=images)
    with pytest.raises(ValueError, match="has no 'images' array"):
        open_images(tmp_path / "other.npz")
    np.savez(tmp_path / "four.npz", images=np.zeros((2, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        open_images(tmp_path / "four.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="images: data: no images"):
        open_images(tmp_path / "empty")
    mixed = write_edm_folder(images[:3], tmp_path / "mixed")
    Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(mixed / "00000" / "img00000009.png")
    with pytest.raises(ValueError, match=r"every image must be \[3, 6, 5\] .*img00000009.png is \[3, 7, 7\]"):
        collect(open_images(mixed))
    source = open_images(mixed)
    with pytest.raises(ValueError, match="has 4 images, asked for 5"):
        collect(source, num=5)
