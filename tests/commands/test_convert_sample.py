"""``sidkernels convert`` and ``sidkernels sample`` end to end on small networks."""
import os
import pickle

import numpy as np
import pytest
import torch

from sidkernels.checkpoint import load_checkpoint, save_network
from sidkernels.cli import main
from sidkernels.networks import build_preset
from tests.checkpoint.edm_standin import dumps_edm_pickle

SMALL = dict(img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
             dropout=0.0)


class Payload:
    def __reduce__(self):
        return os.system, ("true",)


def test_convert_official_pickle(tmp_path, capsys):
    net = build_preset("cifar10-uncond", **SMALL).eval()
    src = tmp_path / "edm-tiny.pkl"
    src.write_bytes(dumps_edm_pickle({"ema": net}))
    out = tmp_path / "out" / "teacher.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    assert "EDMPrecond(SongUNet)" in capsys.readouterr().out
    assert (tmp_path / "out" / "teacher.json").is_file()
    converted = load_checkpoint(out)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), converted.state_dict().values()))


def test_convert_refuses_unsafe_pickles_and_bad_output(tmp_path, capsys):
    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"ema": Payload()}))
    out = tmp_path / "net.safetensors"
    assert main(["convert", str(src), str(out)]) == 1
    assert "refusing to load global" in capsys.readouterr().err and not out.exists()
    assert main(["convert", str(src), str(tmp_path / "net.pt")]) == 2


@pytest.fixture
def conditional_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = build_preset("cifar10-cond", **SMALL)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return save_network(net, tmp_path / "cond.safetensors")[0]


def read(outdir):
    with np.load(outdir / "samples.npz") as f:
        return {k: f[k] for k in f.files}


def test_sample_writes_grid_and_npz_and_is_batch_invariant(conditional_checkpoint, tmp_path):
    common = ["sample", str(conditional_checkpoint), "--seeds", "0-4", "--steps", "2", "--no-progress",
              "--device", "cpu"]
    assert main(common + ["--outdir", str(tmp_path / "a"), "--batch", "5"]) == 0
    assert main(common + ["--outdir", str(tmp_path / "b"), "--batch", "2"]) == 0
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert a["images"].shape == (5, 8, 8, 3) and a["images"].dtype == np.uint8
    assert a["seeds"].tolist() == [0, 1, 2, 3, 4] and ((a["labels"] >= 0) & (a["labels"] < 10)).all()
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"], b["labels"])
    import matplotlib.image

    grid = matplotlib.image.imread(tmp_path / "a" / "grid.png")
    assert grid.shape[:2] == (16, 24)  # 5 images -> 2 rows x 3 columns of 8x8


def test_sample_one_step_fixed_class_and_churn(conditional_checkpoint, tmp_path):
    args = ["sample", str(conditional_checkpoint), "--seeds", "3,7", "--no-progress", "--device", "cpu"]
    assert main(args + ["--outdir", str(tmp_path / "g"), "--one-step", "--class", "4"]) == 0
    assert read(tmp_path / "g")["labels"].tolist() == [4, 4]
    assert main(args + ["--outdir", str(tmp_path / "s"), "--steps", "3", "--S_churn", "10"]) == 0
    assert read(tmp_path / "s")["images"].shape == (2, 8, 8, 3)


def test_sample_argument_errors(conditional_checkpoint, tmp_path, capsys):
    base = ["sample", str(conditional_checkpoint), "--outdir", str(tmp_path / "x"), "--no-progress"]
    assert main(base + ["--seeds", "a-b"]) == 1
    assert "--seeds" in capsys.readouterr().err
    assert main(base + ["--seeds", "0", "--class", "10", "--steps", "1"]) == 1
    assert "--class must be in [0, 10)" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing.safetensors"), "--outdir", str(tmp_path)]) == 1


def test_sample_sign_steps_uses_the_run_config_and_per_seed_noise(tmp_path, capsys):
    from sidkernels.images import to_uint8
    from sidkernels.sign import IdempotentStudent

    torch.manual_seed(0)
    net = build_preset("cifar10-uncond", **SMALL).eval()
    run = tmp_path / "run"
    ckpt = save_network(net, run / "network-snapshot-000001.safetensors")[0]
    (run / "config.json").write_text('{"time_mode": "estimated", "sigma_c": 80.0, "renoise": {"2": [0.3]}}')
    base = ["sample", str(ckpt), "--seeds", "0-2", "--no-progress", "--device", "cpu"]
    assert main(base + ["--outdir", str(tmp_path / "one"), "--sign-steps", "1"]) == 0
    f = IdempotentStudent(net, "estimated", 80.0)
    z = torch.stack([torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    with torch.no_grad():
        expected = to_uint8(f(80.0 * z))
    assert np.array_equal(read(tmp_path / "one")["images"], expected)
    # two steps: the run's re-noise level 0.3, per-seed noise (batch invariant); --renoise overrides it
    assert main(base + ["--outdir", str(tmp_path / "a"), "--sign-steps", "2", "--batch", "3"]) == 0
    assert main(base + ["--outdir", str(tmp_path / "b"), "--sign-steps", "2", "--batch", "1"]) == 0
    assert main(base + ["--outdir", str(tmp_path / "c"), "--sign-steps", "2", "--renoise", "0.3"]) == 0
    assert main(base + ["--outdir", str(tmp_path / "d"), "--sign-steps", "2", "--renoise", "2.0"]) == 0
    a, b, c, d = (read(tmp_path / k)["images"] for k in "abcd")
    assert np.array_equal(a, b) and np.array_equal(a, c) and not np.array_equal(a, d)
    assert not np.array_equal(a, expected)
    capsys.readouterr()
    assert main(base + ["--outdir", str(tmp_path / "e"), "--sign-steps", "3", "--renoise", "0.5"]) == 1
    assert "--renoise / --sign-steps: a 3-step schedule needs 2 positive re-noising levels" in capsys.readouterr().err
