"""Presets: parameter counts of the official networks (docs/networks.md §3.3) and state-dict names/shapes, built on the
meta device."""
import pytest
import torch

from sidkernels.networks import PRESETS, EDMPrecond, VEPrecond, VPPrecond, build_preset

OFFICIAL_PARAMETER_COUNTS = {
    "cifar10-uncond": 55_733_891,
    "cifar10-cond": 55_735_299,
    "cifar10-ncsnpp": 56_397_827,
    "ffhq64": 61_805_571,
    "afhq64": 61_805_571,
    "imagenet64": 295_899_267,
}


def meta_preset(name, **overrides):
    with torch.device("meta"):
        return build_preset(name, **overrides)


def shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_every_preset_has_an_official_count():
    assert set(PRESETS) == set(OFFICIAL_PARAMETER_COUNTS)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMETER_COUNTS))
def test_parameter_count(name):
    net = meta_preset(name)
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMETER_COUNTS[name]
    assert isinstance(net, EDMPrecond)
    assert all(k.startswith("model.") for k in net.state_dict())


def _module_names(net, part):
    return list(getattr(net.model, part).keys())


def test_cifar10_block_list_matches_the_spec():
    """docs/networks.md §3.1: CIFAR-10 DDPM++ (32x32, [2,2,2])."""
    net = meta_preset("cifar10-uncond")
    enc = ["32x32_conv"] + [f"32x32_block{i}" for i in range(4)]
    for res in (16, 8):
        enc += [f"{res}x{res}_down"] + [f"{res}x{res}_block{i}" for i in range(4)]
    dec = ["8x8_in0", "8x8_in1"] + [f"8x8_block{i}" for i in range(5)]
    for res in (16, 32):
        dec += [f"{res}x{res}_up"] + [f"{res}x{res}_block{i}" for i in range(5)]
    dec += ["32x32_aux_norm", "32x32_aux_conv"]
    assert _module_names(net, "enc") == enc
    assert _module_names(net, "dec") == dec

    s = shapes(net)
    assert s["model.map_layer0.weight"] == (512, 128)
    assert s["model.map_layer1.weight"] == (512, 512)
    assert s["model.map_augment.weight"] == (128, 9) and "model.map_augment.bias" not in s
    assert not any(k.startswith("model.map_noise") for k in s)  # positional embedding: no tensors
    assert s["model.enc.32x32_conv.weight"] == (128, 3, 3, 3)
    assert s["model.enc.32x32_block0.conv0.weight"] == (256, 128, 3, 3)
    assert s["model.enc.32x32_block0.skip.weight"] == (256, 128, 1, 1)
    assert s["model.enc.32x32_block0.affine.weight"] == (256, 512)  # no adaptive scale in SongUNet
    for i in range(4):  # attention at 16x16 only, one head, qkv has 3C channels
        assert s[f"model.enc.16x16_block{i}.qkv.weight"] == (768, 256, 1, 1)
        assert f"model.enc.8x8_block{i}.qkv.weight" not in s
        assert f"model.enc.32x32_block{i}.qkv.weight" not in s
    assert "model.dec.8x8_in0.qkv.weight" in s and "model.dec.8x8_in1.qkv.weight" not in s
    assert [f"model.dec.16x16_block{i}.qkv.weight" in s for i in range(5)] == [False] * 4 + [True]
    assert s["model.dec.8x8_block0.conv0.weight"] == (256, 512, 3, 3)
    assert s["model.dec.32x32_block3.conv0.weight"] == (256, 512, 3, 3)
    assert s["model.dec.32x32_block4.conv0.weight"] == (256, 384, 3, 3)
    assert s["model.dec.32x32_aux_norm.weight"] == (256,)
    assert s["model.dec.32x32_aux_conv.weight"] == (3, 256, 3, 3)
    assert s["model.dec.32x32_aux_conv.bias"] == (3,)
    # the resampling filter is a saved buffer exactly where a conv resamples
    assert s["model.enc.16x16_down.conv0.resample_filter"] == (1, 1, 2, 2)
    assert s["model.enc.16x16_down.skip.resample_filter"] == (1, 1, 2, 2)
    assert s["model.dec.16x16_up.conv0.resample_filter"] == (1, 1, 2, 2)
    assert not any(k.endswith("resample_filter") and "_block" in k for k in s)
    assert net.model.enc["16x16_block0"].num_heads == 1
    assert net.model.enc["16x16_block0"].skip is None


def test_cifar10_cond_adds_only_the_label_map():
    cond, uncond = shapes(meta_preset("cifar10-cond")), shapes(meta_preset("cifar10-uncond"))
    assert set(cond) - set(uncond) == {"model.map_label.weight", "model.map_label.bias"}
    assert cond["model.map_label.weight"] == (128, 10)


def test_ncsnpp_fourier_buffer_and_residual_encoder():
    s = shapes(meta_preset("cifar10-ncsnpp"))
    assert s["model.map_noise.freqs"] == (128,)  # noise channels 256 -> 128 frequencies
    assert s["model.map_layer0.weight"] == (512, 256)
    assert s["model.enc.16x16_aux_residual.weight"] == (256, 3, 3, 3)
    assert s["model.enc.8x8_aux_residual.weight"] == (256, 256, 3, 3)
    assert s["model.enc.16x16_aux_residual.resample_filter"] == (1, 1, 4, 4)
    assert s["model.enc.16x16_down.conv0.resample_filter"] == (1, 1, 4, 4)


def test_ffhq64_levels():
    net = meta_preset("ffhq64")
    s = shapes(net)
    assert s["model.enc.64x64_conv.weight"] == (128, 3, 3, 3)
    assert s["model.enc.64x64_block0.conv0.weight"] == (128, 128, 3, 3)
    assert s["model.enc.32x32_block0.conv0.weight"] == (256, 128, 3, 3)
    attn = {k.split(".")[2].split("_")[0] for k in s if k.endswith("qkv.weight") and k.startswith("model.enc")}
    assert attn == {"16x16"}
    assert _module_names(net, "dec")[-2:] == ["64x64_aux_norm", "64x64_aux_conv"]


def test_imagenet64_adm_structure():
    net = meta_preset("imagenet64")
    s = shapes(net)
    assert s["model.map_layer0.weight"] == (768, 192)
    assert s["model.map_label.weight"] == (768, 1000) and "model.map_label.bias" not in s
    assert "model.map_augment.weight" not in s  # trained without augmentation
    assert s["model.enc.64x64_conv.weight"] == (192, 3, 3, 3)
    assert s["model.enc.64x64_block0.affine.weight"] == (384, 768)  # adaptive scale and shift
    # a same-width down-block's skip only resamples: a filter buffer and no weight
    assert s["model.enc.32x32_down.skip.resample_filter"] == (1, 1, 2, 2)
    assert "model.enc.32x32_down.skip.weight" not in s
    heads = {res: net.model.enc[f"{res}x{res}_block0"].num_heads for res in (64, 32, 16, 8)}
    assert heads == {64: 0, 32: 6, 16: 9, 8: 12}
    assert net.model.dec["8x8_in0"].num_heads == 12 and net.model.dec["8x8_in1"].num_heads == 0
    assert all(net.model.dec[f"32x32_block{i}"].num_heads == 6 for i in range(4))
    assert s["model.out_norm.weight"] == (192,) and s["model.out_conv.weight"] == (3, 192, 3, 3)
    assert net.model.out_norm.num_groups == 32 and net.model.out_norm.eps == 1e-5
    assert net.model.enc["64x64_block0"].norm0.eps == 1e-5 and net.model.enc["64x64_block0"].skip_scale == 1


def test_songunet_groupnorm_and_skip_scale():
    block = meta_preset("cifar10-uncond").model.enc["32x32_block0"]
    assert block.norm0.num_groups == 32 and block.norm0.eps == 1e-6
    assert block.skip_scale == pytest.approx(0.5 ** 0.5)


def test_precond_override_and_other_overrides():
    assert isinstance(meta_preset("cifar10-uncond", precond="vp"), VPPrecond)
    assert isinstance(meta_preset("cifar10-ncsnpp", precond="ve"), VEPrecond)
    net = meta_preset("cifar10-uncond", dropout=0.0, attention_impl="reference", model_channels=64)
    assert net.model.enc["16x16_block0"].attention_impl == "reference"
    assert net.model.enc["16x16_block0"].dropout == 0.0
    assert net.init_kwargs["model_channels"] == 64


@pytest.mark.parametrize("call, match", [
    (lambda: build_preset("cifar100"), "unknown preset name 'cifar100'"),
    (lambda: build_preset("cifar10-uncond", precond="ddpm"), "precond must be one of"),
    (lambda: build_preset("cifar10-uncond", embedding_type="learned"), "embedding_type must be one of"),
    (lambda: build_preset("cifar10-uncond", model_type="UNet2D"), "model_type must be one of"),
    (lambda: build_preset("cifar10-uncond", attention_impl="flash"), "attention_impl must be one of"),
])
def test_bad_arguments_are_named(call, match):
    with torch.device("meta"), pytest.raises(ValueError, match=match):
        call()
