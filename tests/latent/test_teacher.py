"""The teacher provider: a local diffusers pipeline folder, the tiny and random teachers, clear refusals."""
import shutil

import pytest
import torch

from sidkernels.latent import tiny
from sidkernels.latent.teacher import load_teacher


def test_local_pipeline_folder(tiny_pipeline):
    t = load_teacher(str(tiny_pipeline))
    ref = tiny.tiny_unet(0)
    for (k, a), (_, b) in zip(t.unet.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert t.scheduler_config["beta_schedule"] == "scaled_linear" and t.scheduler_config["prediction_type"] == "epsilon"
    assert t.tokenizer("a cat").input_ids[0] == t.tokenizer.bos_token_id
    assert t.text_encoder.config.hidden_size == 16 and t.vae_scaling_factor == pytest.approx(0.18215)
    bare = load_teacher(str(tiny_pipeline), text=False, vae=False)
    assert bare.text_encoder is None and bare.tokenizer is None and bare.vae is None


def test_incomplete_folder_and_unknown_names_are_refused(tmp_path, tiny_pipeline):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_pipeline, broken)
    shutil.rmtree(broken / "scheduler")
    with pytest.raises(FileNotFoundError, match=r"not a diffusers pipeline folder, missing \['scheduler'\]"):
        load_teacher(str(broken))
    with pytest.raises(FileNotFoundError, match="no such folder .*'owner/name'"):
        load_teacher(str(tmp_path / "nowhere" / "sd15"))


def test_tiny_teacher_is_seeded():
    a, b = load_teacher("tiny", seed=3), load_teacher("tiny", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.unet.parameters(), b.unet.parameters()))
    assert a.source == "tiny" and a.unet.config.sample_size == 8


def test_random_teacher_has_the_preset_architecture(monkeypatch):
    """``--teacher random`` builds the preset's architectures with random weights (here the preset's configs are
    swapped for toy ones, so the test stays small) and a character tokenizer of the preset's text length."""
    from sidkernels.latent import presets
    toy = dict(unet=tiny.TINY_UNET, scheduler=tiny.TINY_SCHEDULER, vae=tiny.TINY_VAE, text_length=8,
               text_encoder={**tiny.TINY_TEXT, "vocab_size": 200})
    monkeypatch.setitem(presets.PRESET_MODELS, "sd15", toy)
    t = load_teacher("random", seed=1)
    assert list(t.unet.config.block_out_channels) == [16, 32] and t.text_encoder.config.vocab_size == 200
    assert t.tokenizer.model_max_length == 8 and t.vae.config.latent_channels == 4
    assert t.source.startswith("random (sd15")
    ids = t.tokenizer(["a cat"], padding="max_length", max_length=8, return_tensors="pt").input_ids
    assert t.text_encoder(ids).last_hidden_state.shape == (1, 8, 16)
