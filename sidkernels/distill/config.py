"""Run configuration of a SiD distillation and the presets of the official runs (docs/sid.md §3.1).

``mixture`` is the embedded default (digit mixture, small teacher trained in place, exact metrics); the
other presets reproduce the official hyper-parameters for their EDM teachers, including the fake-score
step's augmentation probability (``augment``: 0.12 CIFAR-10, 0.15 FFHQ/AFHQ, 0 ImageNet; see
:mod:`sidkernels.distill.augment`).
"""
from __future__ import annotations

import dataclasses

from sidkernels.distill.lr_schedule import LR_SCHEDULES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def split_batch(batch: int, batch_gpu: int | None, world_size: int) -> tuple[int, int, int]:
    """The global ``batch`` over ``world_size`` ranks in micro-batches of ``batch_gpu`` (None: one per rank):
    (images per rank, micro-batch, accumulation rounds); refuses a split that is not whole."""
    if batch < 1 or batch % world_size:
        raise ValueError(f"batch ({batch}) must be a positive multiple of the world size ({world_size})")
    per_rank = batch // world_size
    micro = batch_gpu or per_rank
    if micro < 1 or per_rank % micro:
        raise ValueError(f"batch per rank ({per_rank}) must be divisible by batch_gpu ({micro}): "
                         f"the accumulation rounds must be a whole number")
    return per_rank, micro, per_rank // micro


@dataclasses.dataclass
class DistillConfig:
    preset: str = "mixture"
    teacher: str | None = None          # checkpoint path or "random"; mixture: None = train/cache one, "exact" = analytic
    student_channels: int | None = None  # mixture: G and the fake score start from the cached network of this width
    out: str = "runs/sid-mixture"
    kimg: float = 40.0                  # generator-update images to train on, in thousands
    batch: int = 64                     # global batch per optimiser step
    batch_gpu: int | None = None        # micro-batch per rank (None: batch / world size)
    alpha: float = 1.2
    tmax: float = 800.0
    init_sigma: float = 2.5
    lr: float = 1e-5                    # fake-score Adam learning rate
    glr: float = 1e-5                   # generator Adam learning rate
    lr_schedule: str = "constant"       # both learning rates over the run: constant | cosine (decay to 0 at kimg)
    g_beta1: float = 0.0
    adam_eps: float = 1e-8
    lsg: float = 100.0                  # generator loss scale
    ls: float = 1.0                     # fake-score loss scale
    fake_updates: int = 1               # fake-score updates per generator update
    augment: float = 0.0                # fake-score step: probability p of each geometric augmentation
    ema_halflife_kimg: float = 500.0
    ema_rampup: float | None = 0.05
    dropout: float | None = None        # None: the preset's
    precision: str = "auto"             # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (autocast; static scales)
    tf32: bool = False                  # TF32 matmuls/convs in fp32 runs
    compile: bool = False
    compile_backend: str = "inductor"   # torch.compile backend of the objectives (tests use aot_eager)
    cuda_graphs: bool = False           # with compile: the objectives in CUDA graphs, capturable Adam (no host syncs)
    channels_last: bool = True
    fused: bool = True                  # fused ops (False: plain PyTorch references, the official recipe)
    fused_adam: bool | None = None      # Adam's fused implementation (None: on CUDA; foreach on the CPU)
    seed: int = 0
    tick_kimg: float = 4.0              # report interval
    snap_ticks: int = 5                 # training state every this many ticks (and at the end)
    eval_samples: int = 2000            # G_ema samples per report on the mixture
    teacher_eval_samples: int = 2000    # teacher Heun samples for the mixture baseline (0: skip)
    device: str = "auto"                # auto: CUDA if available (under torchrun the rank's cuda:LOCAL_RANK), else CPU
    resume: str | None = None           # a training state, or "auto": the newest one in ``out``
    keep_states: int = 3                # training states kept in ``out`` (older ones are deleted after each save)
    data: str | None = None             # a data set in EDM's layout: SiD takes its class labels (the empirical
                                        # prior), SiDA and SIGN its images too
    data_workers: int = 2               # DataLoader worker processes decoding the images
    fid_every_kimg: float | None = None  # image presets: FID of G_ema every this many kimg (None: off)
    fid_num: int = 50_000               # generated images per FID
    detector: str | None = None         # FID detector file or URL (TorchScript inception-2015-12-05.pt)
    fid_ref: str | None = None          # FID reference statistics npz (EDM's fid-refs, or `sidkernels fid-ref`)

    def validate(self, world_size: int = 1) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        split_batch(self.batch, self.batch_gpu, world_size)
        if self.kimg <= 0 or self.tick_kimg <= 0:
            raise ValueError(f"kimg and tick_kimg must be > 0, got {self.kimg}, {self.tick_kimg}")
        if not 0 <= self.augment <= 1:
            raise ValueError(f"augment (a probability) must be in [0, 1], got {self.augment}")
        if not 0 < self.tmax <= 1000:
            raise ValueError(f"tmax must be in (0, 1000], got {self.tmax}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.fake_updates < 1:
            raise ValueError(f"fake_updates must be >= 1, got {self.fake_updates}")
        if self.preset != "mixture" and (self.teacher == "exact" or self.student_channels is not None):
            raise ValueError(f"teacher='exact' and student_channels need preset 'mixture' (the analytic target), "
                             f"got preset {self.preset!r}")
        if self.student_channels is not None and self.student_channels < 1:
            raise ValueError(f"student_channels must be a positive width, got {self.student_channels}")
        if self.keep_states < 1:
            raise ValueError(f"keep_states must be >= 1 (the newest state is what --resume continues), got "
                             f"{self.keep_states}")
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs needs compile=True (the objectives are captured by torch.compile)")
        if self.data_workers < 0:
            raise ValueError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.preset != "mixture" and self.teacher is None:
            raise ValueError(f"preset {self.preset!r} needs --teacher PATH (an official EDM pickle, a SiD state "
                             f"or our safetensors) or --teacher random")
        self._validate_fid()

    def _validate_fid(self) -> None:
        if self.fid_every_kimg is None:
            return
        if self.preset == "mixture":
            raise ValueError("--fid-every: the mixture preset has exact metrics (fd, nll, class_kl) instead of FID; "
                             "FID is for the image presets")
        if not self.fid_every_kimg > 0:
            raise ValueError(f"--fid-every must be > 0 kimg, got {self.fid_every_kimg}")
        if self.fid_num < 2:
            raise ValueError(f"--fid-num must be >= 2, got {self.fid_num}")
        if self.detector is None:
            raise ValueError("--fid-every needs --detector PATH: the TorchScript Inception inception-2015-12-05.pt "
                             "(or pytorch-fid's .pth), a file or an explicit URL")
        if self.fid_ref is None:
            raise ValueError("--fid-every needs --fid-ref REF.npz: reference statistics (EDM's fid-refs npz, or "
                             "`sidkernels fid-ref DATA --detector PATH --out REF.npz`)")


# Official hyper-parameters (docs/sid.md §3.1); batch_gpu from run_sid.sh (4 GPUs there: same micro-batch here).
PRESETS: dict[str, dict] = {
    # the fake score learns 3x faster than G: the study's one change that beat the seed spread (README, the study)
    "mixture": dict(kimg=40.0, batch=64, lr=3e-4, glr=1e-4, ema_halflife_kimg=4.0, tick_kimg=4.0, snap_ticks=5),
    "cifar10-uncond": dict(batch=256, batch_gpu=16, alpha=1.2, lr=1e-5, glr=1e-5, dropout=0.13, augment=0.12,
                           ema_halflife_kimg=500, kimg=500_000, tick_kimg=10, snap_ticks=50),
    "cifar10-cond": dict(batch=256, batch_gpu=16, alpha=1.2, lr=1e-5, glr=1e-5, dropout=0.13, augment=0.12,
                         ema_halflife_kimg=500, kimg=800_000, tick_kimg=10, snap_ticks=50),
    "imagenet64": dict(batch=8192, batch_gpu=16, alpha=1.2, lr=4e-6, glr=4e-6, dropout=0.10,
                       ema_halflife_kimg=2000, kimg=1_000_000, tick_kimg=20, snap_ticks=50),
    "ffhq64": dict(batch=512, batch_gpu=32, alpha=1.2, lr=1e-5, glr=1e-5, g_beta1=0.9, dropout=0.05, augment=0.15,
                   ema_halflife_kimg=500, kimg=500_000, tick_kimg=10, snap_ticks=50),
    "afhq64": dict(batch=512, batch_gpu=32, alpha=1.0, lr=5e-6, glr=5e-6, dropout=0.05, augment=0.15,
                   ema_halflife_kimg=500, kimg=500_000, tick_kimg=10, snap_ticks=50),
}


def make_config(cls, name: str, preset_values: dict, overrides: dict):
    """``cls`` for preset ``name``: its SiD preset values, then ``preset_values``, then ``overrides``
    (None values ignored; unknown keys are an error)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown configuration keys {sorted(unknown)}")
    values = dict(PRESETS[name], preset=name, **preset_values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def preset_config(name: str, **overrides) -> DistillConfig:
    """The SiD configuration of preset ``name`` with ``overrides`` (None values are ignored)."""
    return make_config(DistillConfig, name, {"out": f"runs/sid-{name}"}, overrides)
