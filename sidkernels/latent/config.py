"""Run configuration of a SiD-LSG distillation of a latent text-to-image teacher."""
from __future__ import annotations

import dataclasses

from sidkernels.distill.config import split_batch
from sidkernels.latent.presets import LATENT_PRESETS

PRECISIONS = ("auto", "fp32", "bf16")
EMA_PLACES = ("gpu", "cpu", "off")
CHECKPOINTING = ("none", "trained", "all")
OPTIMIZERS = ("adam", "adamw")


@dataclasses.dataclass
class LatentConfig:
    preset: str = "sd15"
    teacher: str | None = None          # diffusers pipeline folder, hub id, or "tiny" (random toy models)
    prompts: str | None = None          # prompt file / captions dataset (see sidkernels.latent.data)
    embeddings: str | None = None       # precomputed text embeddings instead of a text encoder (text.py)
    out: str = "runs/sid-lsg"
    kimg: float = 10_000.0              # generator-update images to train on, thousands
    batch: int = 512                    # global batch per optimiser step
    batch_gpu: int | None = None        # micro-batch per rank (accumulation rounds = batch / world / batch_gpu)
    alpha: float = 1.0
    init_timestep: int = 625            # the generator is the UNet at this timestep on pure noise
    tmin: int = 20                      # loss timesteps t ~ U{tmin .. tmax-1}
    tmax: int = 980
    lr: float = 1e-6                    # fake-score learning rate
    glr: float = 1e-6                   # generator learning rate
    optimizer: str = "adam"             # adam | adamw (weight decay 0.01, as SiD-LSG's adamw option)
    adam_eps: float = 1e-8
    ls: float = 1.0                     # fake-score loss scale
    lsg: float = 1.0                    # generator loss scale
    cfg_train_fake: float = 2.0         # kappa1: guidance of the fake score in its own loss
    cfg_eval_fake: float = 2.0          # kappa2 = kappa3: guidance of the fake score in the generator loss
    cfg_eval_real: float = 2.0          # kappa4: guidance of the teacher in the generator loss
    prompt_dropout: float = 0.1         # fake step: P(prompt -> "") when kappa1 or kappa2 != 1 (as SiD-LSG)
    ema_halflife_kimg: float = 50.0
    ema_rampup: float | None = 0.05
    ema: str = "cpu"                    # gpu | cpu (an fp32 copy in host memory) | off (sample from G)
    precision: str = "auto"             # auto (bf16 autocast + bf16 teacher on CUDA, fp32 on CPU) | fp32 | bf16
    grad_checkpointing: str = "none"    # none | trained (G and the fake score) | all (and the teacher)
    fused: bool = True                  # fused ops (False: the PyTorch references)
    seed: int = 0
    tick_kimg: float = 2.0              # report interval
    snap_ticks: int = 50                # training state + generator snapshot every this many ticks (and at the end)
    sample_count: int = 8               # images in the sample grid (the first prompts, fixed latents)
    device: str = "auto"
    resume: str | None = None           # a training state, or "auto": the newest in ``out``
    fsdp: bool = False                  # shard G, the fake score (and EMA) over torchrun ranks (FSDP2)
    shard_teacher: bool = True          # with fsdp: shard the frozen teacher too (False: replicate it)

    def validate(self, world_size: int = 1) -> None:
        def choice(name, value, options):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        choice("precision", self.precision, PRECISIONS)
        choice("ema", self.ema, EMA_PLACES)
        choice("grad_checkpointing", self.grad_checkpointing, CHECKPOINTING)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.teacher is None:
            raise ValueError(f"preset {self.preset!r} needs --teacher: a local diffusers pipeline folder (unet/, "
                             f"scheduler/, text_encoder/, tokenizer/, vae/), a hub id, or 'tiny'")
        if (self.prompts is None) == (self.embeddings is None):
            raise ValueError("give exactly one of prompts (a prompt file or captions dataset, encoded by the "
                             "teacher's text encoder) and embeddings (a precomputed embedding file)")
        split_batch(self.batch, self.batch_gpu, world_size)
        if self.kimg <= 0 or self.tick_kimg <= 0:
            raise ValueError(f"kimg and tick_kimg must be > 0, got {self.kimg}, {self.tick_kimg}")
        if not 0 <= self.tmin < self.tmax:
            raise ValueError(f"need 0 <= tmin < tmax, got tmin={self.tmin}, tmax={self.tmax}")
        if self.fsdp and self.ema == "cpu":
            raise ValueError("fsdp keeps the EMA sharded beside G: use ema='gpu' or ema='off' with fsdp")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")

    def check_timesteps(self, num_timesteps: int) -> None:
        """The timestep settings against the teacher's schedule length T."""
        if self.tmax > num_timesteps:
            raise ValueError(f"tmax ({self.tmax}) exceeds the teacher's {num_timesteps} timesteps")
        if not 0 <= self.init_timestep < num_timesteps:
            raise ValueError(f"init_timestep must be in [0, {num_timesteps}), got {self.init_timestep}")

    @property
    def guided_fake_step(self) -> bool:
        """SiD-LSG drops prompts in the fake step iff the fake score is guided anywhere."""
        return self.cfg_train_fake != 1 or self.cfg_eval_fake != 1


def latent_config(preset: str = "sd15", **overrides) -> LatentConfig:
    """The preset's configuration with ``overrides`` (unknown keys are an error)."""
    if preset not in LATENT_PRESETS:
        raise ValueError(f"preset must be one of {sorted(LATENT_PRESETS)}, got {preset!r}")
    fields = {f.name for f in dataclasses.fields(LatentConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown LatentConfig fields: {unknown}")
    values = {**LATENT_PRESETS[preset], "out": f"runs/sid-lsg-{preset}", **overrides}
    return LatentConfig(preset=preset, **values)
