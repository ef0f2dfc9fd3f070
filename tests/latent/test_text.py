"""Text conditioning: the CLIP encoder path, precomputed embedding files, prompt dropout."""
import pytest
import torch

from sidkernels.latent import tiny
from sidkernels.latent.text import (EncoderConditioning, FileConditioning, drop_prompts, load_embeddings,
                                    save_embeddings)


def test_encoder_conditioning_is_the_last_hidden_state(tmp_path):
    encoder, tokenizer = tiny.tiny_text_encoder(), tiny.tiny_tokenizer(tmp_path / "tok")
    prompts = ["a cat", "a red car, 4k", ""]
    cond = EncoderConditioning(prompts, encoder, tokenizer, device="cpu")
    ids = tokenizer(prompts, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state
    got = cond.embed(torch.tensor([2, 0, 1, 0]))
    assert got.shape == (4, 8, 16)
    assert torch.equal(got, expected[[2, 0, 1, 0]])
    assert torch.equal(cond.uncond, expected[2])           # the empty prompt
    assert not any(p.requires_grad for p in encoder.parameters())


def test_embedding_file_round_trip(tmp_path):
    prompts = ["one", "two", "three"]
    cond, uncond = torch.randn(3, 8, 16), torch.randn(8, 16)
    path = save_embeddings(tmp_path / "e.safetensors", prompts, cond, uncond)
    p, c, u = load_embeddings(path)
    assert p == prompts and torch.equal(c, cond) and torch.equal(u, uncond)
    source = FileConditioning(path, device="cpu")
    assert torch.equal(source.embed(torch.tensor([2, 2, 0])), cond[[2, 2, 0]])
    assert torch.equal(source.uncond, uncond) and source.prompts == prompts


def test_bad_embedding_files(tmp_path):
    with pytest.raises(ValueError, match=r"cond must be \[P, L, D\] with P = len\(prompts\) = 2"):
        save_embeddings(tmp_path / "x.safetensors", ["a", "b"], torch.randn(3, 8, 16), torch.randn(8, 16))
    with pytest.raises(ValueError, match=r"uncond must be \[L, D\]"):
        save_embeddings(tmp_path / "x.safetensors", ["a"], torch.randn(1, 8, 16), torch.randn(8, 4))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_embeddings(junk)
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a sidkernels text-embedding file"):
        load_embeddings(foreign)


def test_prompt_dropout():
    cond, uncond = torch.randn(4000, 2, 3), torch.randn(2, 3)
    assert drop_prompts(cond, uncond, 0.0) is cond
    out = drop_prompts(cond, uncond, 0.1)
    dropped = (out == uncond).all(dim=(1, 2))
    kept = (out == cond).all(dim=(1, 2))
    assert bool((dropped | kept).all())                    # each sample is either untouched or the empty prompt
    assert abs(dropped.float().mean().item() - 0.1) < 0.02
