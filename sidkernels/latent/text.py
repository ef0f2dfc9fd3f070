"""Text conditioning of a latent teacher: embeddings of the prompts and of the empty prompt.

Two sources give the same interface (``embed(indices) -> [N, L, D]`` and ``uncond -> [L, D]``):

* :class:`EncoderConditioning` runs a CLIP text encoder (``transformers``) on the prompts as they are drawn:
  the encoder's last hidden state for the prompt padded to the tokenizer's ``model_max_length``, as the
  Stable Diffusion pipelines form ``prompt_embeds``; the unconditional embedding is that of ``""``.
* :class:`FileConditioning` reads embeddings precomputed into a safetensors file (:func:`save_embeddings`),
  so training needs no text encoder in memory.

Prompt dropout (:func:`drop_prompts`) replaces a random fraction of the embeddings by the unconditional one,
as SiD-LSG does in its fake-score step when guidance is used there.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from sidkernels.checkpoint.safetensors_io import _atomic_write

EMBEDDINGS_FORMAT = "sidkernels-text-embeddings/1"
EMBEDDINGS_KEY = "sidkernels_embeddings"


class EncoderConditioning:
    """Prompt embeddings from a text encoder and tokenizer (frozen, run without grad in ``dtype``)."""

    def __init__(self, prompts: list[str], text_encoder, tokenizer, *, device, dtype=torch.float32):
        self.prompts = list(prompts)
        self.encoder = text_encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.uncond = self.encode([""])[0]

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """``[N, L, D]`` embeddings (the encoder's last hidden state) of ``prompts``."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.encoder(ids.to(self.device)).last_hidden_state

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        return self.encode([self.prompts[int(i)] for i in indices.tolist()])


class FileConditioning:
    """Embeddings read from a file written by :func:`save_embeddings` (kept on ``device``)."""

    def __init__(self, path, *, device, dtype=torch.float32):
        prompts, cond, uncond = load_embeddings(path)
        self.prompts = prompts
        self.cond = cond.to(device=device, dtype=dtype)
        self.uncond = uncond.to(device=device, dtype=dtype)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        return self.cond[indices.to(self.cond.device)]


def save_embeddings(path, prompts: list[str], cond: torch.Tensor, uncond: torch.Tensor) -> Path:
    """Write ``cond`` ``[P, L, D]`` (one per prompt), ``uncond`` ``[L, D]`` and the prompts (metadata JSON)
    to a safetensors file, atomically."""
    if cond.dim() != 3 or cond.shape[0] != len(prompts):
        raise ValueError(f"cond must be [P, L, D] with P = len(prompts) = {len(prompts)}, got {tuple(cond.shape)}")
    if tuple(uncond.shape) != tuple(cond.shape[1:]):
        raise ValueError(f"uncond must be [L, D] = {tuple(cond.shape[1:])}, got {tuple(uncond.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"format": EMBEDDINGS_FORMAT, "prompts": list(prompts)})
    tensors = {"cond": cond.detach().cpu().contiguous(), "uncond": uncond.detach().cpu().contiguous()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={EMBEDDINGS_KEY: meta}))
    return path


def load_embeddings(path) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(prompts, cond [P, L, D], uncond [L, D])`` from :func:`save_embeddings`'s file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(EMBEDDINGS_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"embeddings {path}: not a readable safetensors file ({e})") from e
    meta = json.loads(text) if text else {}
    if meta.get("format") != EMBEDDINGS_FORMAT or set(tensors) != {"cond", "uncond"}:
        raise ValueError(f"embeddings {path}: not a sidkernels text-embedding file (format {EMBEDDINGS_FORMAT!r} "
                         f"with tensors 'cond' and 'uncond')")
    cond, uncond, prompts = tensors["cond"], tensors["uncond"], meta.get("prompts", [])
    if cond.dim() != 3 or cond.shape[0] == 0 or tuple(uncond.shape) != tuple(cond.shape[1:]) \
            or len(prompts) != cond.shape[0]:
        raise ValueError(f"embeddings {path}: expected cond [P, L, D] with P >= 1 prompts and uncond [L, D], got "
                         f"{tuple(cond.shape)}, {tuple(uncond.shape)} and {len(prompts)} prompts")
    return prompts, cond, uncond


def drop_prompts(cond: torch.Tensor, uncond: torch.Tensor, p: float) -> torch.Tensor:
    """Replace each sample's embedding by ``uncond`` with probability p (no host sync)."""
    if p <= 0:
        return cond
    keep = torch.rand(cond.shape[0], 1, 1, device=cond.device) >= p
    return torch.where(keep, cond, uncond.to(cond.dtype).expand_as(cond))
