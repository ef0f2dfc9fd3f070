"""Our format: safetensors weights + JSON config (embedded and next to the file), written atomically."""
import json

import pytest
import torch
from safetensors.torch import save_file

from sidkernels.checkpoint import CheckpointError, load_checkpoint, save_network
from sidkernels.checkpoint.safetensors_io import CONFIG_KEY, FORMAT, read_config
from sidkernels.networks import SongUNet, build_preset

SMALL = dict(img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
             dropout=0.0)


def test_round_trip(tmp_path):
    net = build_preset("cifar10-cond", **SMALL).eval()
    weights, config = save_network(net, tmp_path / "teacher.safetensors")
    assert config == tmp_path / "teacher.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.json", "teacher.safetensors"]  # no temp files
    cfg = json.loads(config.read_text())
    assert cfg == read_config(weights)
    assert cfg["format"] == FORMAT and cfg["class_name"] == "EDMPrecond"
    assert cfg["init_kwargs"]["label_dim"] == 10 and cfg["init_kwargs"]["sigma_max"] == float("inf")

    loaded = load_checkpoint(weights)
    assert type(loaded) is type(net) and loaded.init_kwargs == net.init_kwargs
    sa, sb = net.state_dict(), loaded.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x, labels = torch.randn(2, 3, 8, 8), torch.eye(10)[:2]
    assert torch.equal(net(x, 1.5, labels), loaded(x, 1.5, labels))


def test_overwrite_keeps_a_single_file(tmp_path):
    path = tmp_path / "net.safetensors"
    save_network(build_preset("cifar10-uncond", **SMALL), path)
    save_network(build_preset("cifar10-uncond", **dict(SMALL, model_channels=32)), path)
    assert load_checkpoint(path).init_kwargs["model_channels"] == 32
    assert len(list(tmp_path.iterdir())) == 2


def test_sidecar_config_is_used_when_metadata_is_missing(tmp_path):
    net = build_preset("cifar10-uncond", **SMALL)
    path, _ = save_network(net, tmp_path / "net.safetensors")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))  # no metadata
    assert isinstance(load_checkpoint(path), type(net))


def test_config_and_weight_mismatch(tmp_path):
    path, config = save_network(build_preset("cifar10-uncond", **SMALL), tmp_path / "net.safetensors")
    bad = json.loads(config.read_text())
    bad["init_kwargs"]["model_channels"] = 8
    tensors = load_checkpoint(path).state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={CONFIG_KEY: json.dumps(bad)})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)


def test_missing_config_and_wrong_format(tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="no sidkernels network config"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={CONFIG_KEY: json.dumps({"format": "other/9"})})
    with pytest.raises(CheckpointError, match="unsupported config format"):
        load_checkpoint(path)


def test_only_wrappers_are_saved(tmp_path):
    with pytest.raises(TypeError, match="preconditioned network"):
        save_network(SongUNet(8, 3, 3, **{k: v for k, v in SMALL.items() if k != "img_resolution"}),
                     tmp_path / "unet.safetensors")


def test_missing_file_and_key_misuse(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors")
    path, _ = save_network(build_preset("cifar10-uncond", **SMALL), tmp_path / "net.safetensors")
    with pytest.raises(ValueError, match="key selects a network inside a pickle"):
        load_checkpoint(path, key="ema")
