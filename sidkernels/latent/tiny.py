"""Tiny random latent text-to-image models (UNet, CLIP text encoder and tokenizer, VAE) built from small
configs, for tests and smoke runs (``--teacher tiny``): the SD 1.5 layout at toy widths, no download.

The tokenizer is a CLIP BPE tokenizer over a character vocabulary written to a folder (no merges: every
character is a token), so prompts of plain ASCII text encode without network access.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

# 8x8 latents with 4 channels, 2 resolutions, cross-attention on 16-d text embeddings of 8 tokens
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[16, 32],
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=16, attention_head_dim=4,
                 norm_num_groups=8)
TINY_TEXT = dict(vocab_size=None, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=8)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16],
                down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], layers_per_block=1, norm_num_groups=4,
                sample_size=16)
TINY_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      prediction_type="epsilon", clip_sample=False)

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def _vocab() -> dict[str, int]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = list(chars) + [c + "</w>" for c in chars] + list(_SPECIAL)
    return {tok: i for i, tok in enumerate(tokens)}


def write_tokenizer(folder) -> Path:
    """Write a character-level CLIP tokenizer (vocab.json, merges.txt) to ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tiny_tokenizer(folder):
    from transformers import CLIPTokenizer
    write_tokenizer(folder)
    return CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"),
                         model_max_length=TINY_TEXT["max_position_embeddings"])


def tiny_unet(seed: int = 0, **overrides):
    from diffusers import UNet2DConditionModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**{**TINY_UNET, **overrides})


def tiny_text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel
    vocab = _vocab()
    config = CLIPTextConfig(**{**TINY_TEXT, "vocab_size": len(vocab)}, bos_token_id=vocab[_SPECIAL[0]],
                            eos_token_id=vocab[_SPECIAL[1]], pad_token_id=vocab[_SPECIAL[1]])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**TINY_VAE).eval()


def write_tiny_pipeline(folder, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A diffusers pipeline folder (unet/, scheduler/, text_encoder/, tokenizer/, vae/) of tiny random models,
    in the layout of a local Stable Diffusion checkout."""
    from diffusers import DDPMScheduler
    folder = Path(folder)
    tiny_unet(seed).save_pretrained(folder / "unet")
    tiny_text_encoder(seed + 1).save_pretrained(folder / "text_encoder")
    tiny_tokenizer(folder / "tokenizer").save_pretrained(folder / "tokenizer")
    tiny_vae(seed + 2).save_pretrained(folder / "vae")
    DDPMScheduler(**{**TINY_SCHEDULER, "prediction_type": prediction_type}).save_pretrained(folder / "scheduler")
    return folder
