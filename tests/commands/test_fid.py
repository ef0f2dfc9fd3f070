"""``sidkernels fid-ref`` then ``sidkernels fid`` end to end on a few hundred generated images, with the
TorchScript stand-in detector: folder, zip, npz and --generator give the same FID; bad inputs are named."""
import hashlib
import json

import numpy as np
import pytest
import torch

from sidkernels.checkpoint import save_network
from sidkernels.cli import main
from sidkernels.metrics.fid import frechet_distance
from tests.metrics.standin import StandInDetector, standin_detector_file, tiny_generator
from tests.metrics.test_sources import write_edm_folder, zip_folder

N = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny generator checkpoint, its samples of seeds 0..N-1 as npz, PNG folder and zip, a data set of other
    images (seeds 1000..1000+N-1 of another generator) and the stand-in detector."""
    root = tmp_path_factory.mktemp("fid")
    ckpt = save_network(tiny_generator(seed=0), root / "g.safetensors")[0]
    data_ckpt = save_network(tiny_generator(seed=1), root / "data.safetensors")[0]
    sample = ["--one-step", "--device", "cpu", "--no-progress", "--batch", "100"]
    assert main(["sample", str(ckpt), "--seeds", f"0-{N - 1}", "--outdir", str(root / "gen"), *sample]) == 0
    assert main(["sample", str(data_ckpt), "--seeds", f"1000-{999 + N}", "--outdir", str(root / "data"), *sample]) == 0
    with np.load(root / "gen" / "samples.npz") as f:
        images = f["images"]
    with np.load(root / "data" / "samples.npz") as f:
        data = f["images"]
    folder = write_edm_folder(images, root / "gen-png")
    return dict(root=root, ckpt=ckpt, npz=root / "gen" / "samples.npz", folder=folder,
                zip=zip_folder(folder, root / "gen.zip"), images=images, data=data,
                data_folder=write_edm_folder(data, root / "data-png"), detector=standin_detector_file(root))


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def features(images: np.ndarray) -> np.ndarray:
    """The stand-in's features of uint8 [N, H, W, C] images, run eagerly (not through our loader)."""
    with torch.no_grad():
        return StandInDetector()(torch.from_numpy(images).permute(0, 3, 1, 2), return_features=True).double().numpy()


@pytest.fixture(scope="module")
def ref(setup):
    out = setup["root"] / "ref.npz"
    code = main(["fid-ref", str(setup["data_folder"]), "--detector", str(setup["detector"]), "--out", str(out),
                 "--batch", "64", "--workers", "0", "--device", "cpu", "--no-progress"])
    assert code == 0
    return out


def test_fid_ref_writes_edm_statistics_of_the_data(setup, ref, capsys):
    with np.load(ref) as f:
        mu, sigma = f["mu"], f["sigma"]
        assert int(f["num_images"]) == N
        assert str(f["detector_sha256"]) == hashlib.sha256(setup["detector"].read_bytes()).hexdigest()
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (64, 64)
    feats = features(setup["data"])
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-4, atol=1e-6)


def test_folder_zip_npz_and_generator_give_the_same_fid(setup, ref, capsys):
    common = ["--detector", str(setup["detector"]), "--ref", str(ref), "--device", "cpu", "--no-progress",
              "--batch", "64"]
    results = {}
    for name in ("npz", "folder", "zip"):
        assert main(["fid", str(setup[name]), *common, "--workers", "0"]) == 0
        results[name] = last_json(capsys)
    assert main(["fid", "--generator", str(setup["ckpt"]), "--num", str(N), *common]) == 0
    out = capsys.readouterr().out
    results["generator"] = json.loads(out.strip().splitlines()[-1])
    assert f"seeds 0-{N - 1}" in out and "sha256 " + results["generator"]["detector_sha256"] in out
    sha = hashlib.sha256(setup["detector"].read_bytes()).hexdigest()
    for summary in results.values():
        assert summary["num_images"] == N and summary["detector_sha256"] == sha
        assert summary["fid"] == pytest.approx(results["npz"]["fid"], rel=1e-9)
    with np.load(ref) as f:  # independent of our loaders and statistics: eager features, numpy mean/cov
        mu_ref, sigma_ref = f["mu"], f["sigma"]
    feats = features(setup["images"])
    expected = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), mu_ref, sigma_ref)
    assert results["npz"]["fid"] == pytest.approx(expected, rel=1e-4)
    assert results["npz"]["fid"] > 1.0  # two different generators

    assert main(["fid", str(setup["npz"]), *common, "--num", "100"]) == 0
    assert last_json(capsys)["num_images"] == 100


def test_generator_seed_sets_and_their_minimum(setup, ref, capsys):
    args = ["fid", "--generator", str(setup["ckpt"]), "--detector", str(setup["detector"]), "--ref", str(ref),
            "--device", "cpu", "--no-progress", "--num", "150", "--seeds", f"0-{2 * 150 - 1},1000-1149"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert len(summary["fids"]) == 3 and summary["fid"] == min(summary["fids"])
    assert summary["seed_sets"] == ["0-149", "150-299", "1000-1149"] and summary["num_images"] == 150
    assert "min" in out and "seeds 150-299" in out
    assert main(args[:-2] + ["--seeds", "0-149"]) == 0  # one set alone gives that set's value
    assert last_json(capsys)["fid"] == pytest.approx(summary["fids"][0], rel=1e-9)


def test_bad_inputs_name_the_argument(setup, ref, tmp_path, capsys):
    det, common = str(setup["detector"]), ["--device", "cpu", "--no-progress"]
    assert main(["fid", str(setup["npz"]), "--detector", str(tmp_path / "none.pt"), "--ref", str(ref), *common]) == 1
    assert "detector: no such file" in capsys.readouterr().err
    np.savez(tmp_path / "mu-only.npz", mu=np.zeros(64))
    assert main(["fid", str(setup["npz"]), "--detector", det, "--ref", str(tmp_path / "mu-only.npz"), *common]) == 1
    assert "--ref: " in (err := capsys.readouterr().err) and "has no sigma" in err
    np.savez(tmp_path / "small.npz", mu=np.zeros(8), sigma=np.eye(8))
    assert main(["fid", str(setup["npz"]), "--detector", det, "--ref", str(tmp_path / "small.npz"), *common]) == 1
    assert "--ref: " in (err := capsys.readouterr().err) and "8 feature dimensions, the detector gives 64" in err
    np.savez(tmp_path / "float.npz", images=setup["images"].astype(np.float32))
    assert main(["fid", str(tmp_path / "float.npz"), "--detector", det, "--ref", str(ref), *common]) == 1
    assert "IMAGES: " in (err := capsys.readouterr().err) and "uint8" in err
    assert main(["fid", str(setup["npz"]), "--generator", str(setup["ckpt"]), "--detector", det, "--ref",
                 str(ref), *common]) == 2
    assert main(["fid", "--generator", str(setup["ckpt"]), "--detector", det, "--ref", str(ref), "--num", "7",
                 "--seeds", "0-9", *common]) == 1
    assert "do not split into sets of --num 7" in capsys.readouterr().err
    assert main(["fid", str(setup["npz"]), "--seeds", "0-9", "--detector", det, "--ref", str(ref), *common]) == 2
    assert main(["fid-ref", str(setup["npz"]), "--detector", det, "--out", str(tmp_path / "r.txt"), *common]) == 2
    assert main(["fid-ref", str(tmp_path / "nowhere"), "--detector", det, "--out", str(tmp_path / "r.npz"),
                 *common]) == 1
    assert "data: no such folder, zip or npz" in capsys.readouterr().err and not (tmp_path / "r.npz").exists()
