"""The teacher provider: a latent text-to-image teacher (UNet, scheduler config, text encoder, tokenizer, VAE)
from a local diffusers pipeline folder, a hub id (only where the hub can be reached) or ``"tiny"`` (the
random toy models of :mod:`sidkernels.latent.tiny`).

Weights are loaded in fp32 on the CPU; the trainer decides each network's device and storage dtype.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from torch import nn

SUBFOLDERS = ("unet", "scheduler", "text_encoder", "tokenizer", "vae")


@dataclasses.dataclass
class LatentTeacher:
    unet: nn.Module | None
    scheduler_config: dict
    text_encoder: nn.Module | None
    tokenizer: object | None
    vae: nn.Module | None
    source: str

    @property
    def vae_scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def require_diffusers() -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError as e:
        raise ImportError("latent teachers need diffusers and transformers: pip install 'sidkernels[latent]'") from e


def _random_teacher(spec: str, *, text: bool, vae: bool, seed: int, preset: str, unet: bool = True) -> LatentTeacher:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sidkernels.latent import tiny
    from sidkernels.latent.presets import PRESET_MODELS
    folder = tempfile.mkdtemp(prefix="sidkernels-tokenizer-")
    if spec == "tiny":
        tokenizer = tiny.tiny_tokenizer(folder) if text else None
        return LatentTeacher(unet=tiny.tiny_unet(seed) if unet else None, scheduler_config=dict(tiny.TINY_SCHEDULER),
                             text_encoder=tiny.tiny_text_encoder(seed + 1) if text else None, tokenizer=tokenizer,
                             vae=tiny.tiny_vae(seed + 2) if vae else None, source="tiny")
    models = PRESET_MODELS[preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet_model = UNet2DConditionModel(**models["unet"]) if unet else None
        text_encoder = CLIPTextModel(CLIPTextConfig(**models["text_encoder"])).eval() if text else None
        vae_model = AutoencoderKL(**models["vae"]).eval() if vae else None
    tokenizer = None
    if text:
        from transformers import CLIPTokenizer
        tiny.write_tokenizer(folder)
        tokenizer = CLIPTokenizer(f"{folder}/vocab.json", f"{folder}/merges.txt",
                                  model_max_length=models["text_length"])
    return LatentTeacher(unet=unet_model, scheduler_config=dict(models["scheduler"]), text_encoder=text_encoder,
                         tokenizer=tokenizer, vae=vae_model, source=f"random ({preset} architecture)")


def _scheduler_config(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"teacher {folder}: no scheduler/scheduler_config.json (the noise schedule)")
    return json.loads(path.read_text())


def load_teacher(spec: str, *, text: bool = True, vae: bool = True, seed: int = 0,
                 preset: str = "sd15") -> LatentTeacher:
    """Load the teacher named by ``spec``: a pipeline folder, a hub id, ``"tiny"`` (toy models) or
    ``"random"`` (the preset's architectures with random weights and a character tokenizer: for benchmarks).

    ``text=False`` skips the text encoder and tokenizer (precomputed embeddings), ``vae=False`` the VAE.
    """
    require_diffusers()
    if spec in ("tiny", "random"):
        return _random_teacher(spec, text=text, vae=vae, seed=seed, preset=preset)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    folder = Path(spec)
    local = folder.is_dir()
    if local:
        missing = [s for s in ("unet", "scheduler") + (("text_encoder", "tokenizer") if text else ())
                   + (("vae",) if vae else ()) if not (folder / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"teacher {folder}: not a diffusers pipeline folder, missing {missing} "
                                    f"(expected subfolders {SUBFOLDERS})")
        scheduler_config = _scheduler_config(folder)
    elif spec.count("/") == 1 and not spec.startswith((".", "/")):
        from diffusers import DDPMScheduler
        try:
            scheduler_config = dict(DDPMScheduler.load_config(spec, subfolder="scheduler"))
        except Exception as e:
            raise FileNotFoundError(f"teacher {spec!r}: not a local folder, and the hub id could not be read "
                                    f"(no network access, or no such repository): {e}") from e
    else:
        raise FileNotFoundError(f"teacher {spec!r}: no such folder (give a diffusers pipeline folder, a hub id "
                                f"'owner/name', or 'tiny')")
    unet = UNet2DConditionModel.from_pretrained(spec, subfolder="unet")
    text_encoder, tokenizer = load_text(spec) if text else (None, None)
    vae_model = AutoencoderKL.from_pretrained(spec, subfolder="vae").eval() if vae else None
    return LatentTeacher(unet=unet, scheduler_config=scheduler_config, text_encoder=text_encoder,
                         tokenizer=tokenizer, vae=vae_model, source=str(spec))


def load_text(spec: str):
    """``(text_encoder, tokenizer)`` of a pipeline folder or hub id (``text_encoder/``, ``tokenizer/``), or of
    the ``tiny``/``random`` teachers."""
    require_diffusers()
    if spec in ("tiny", "random"):
        teacher = _random_teacher(spec, text=True, vae=False, seed=0, preset="sd15", unet=False)
        return teacher.text_encoder, teacher.tokenizer
    from transformers import CLIPTextModel, CLIPTokenizer
    return (CLIPTextModel.from_pretrained(spec, subfolder="text_encoder").eval(),
            CLIPTokenizer.from_pretrained(spec, subfolder="tokenizer"))
