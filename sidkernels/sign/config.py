"""Configuration of a SIGN distillation: the SiD run configuration plus SIGN's terms and weights
(docs/sign.md §5 defaults, a reconstruction [R]); ``variant="ign"`` is the original IGN objective."""
from __future__ import annotations

import dataclasses

from sidkernels.distill.config import PRESETS, DistillConfig, make_config
from sidkernels._abi import DISTANCES
from sidkernels.sign.pairs import DTYPES as PAIR_DTYPES, LEVELS
from sidkernels.sign.sampling import renoise_sigmas
from sidkernels.sign.student import TIME_MODES

VARIANTS = ("sign", "ign")


@dataclasses.dataclass
class SIGNConfig(DistillConfig):
    variant: str = "sign"               # sign | ign (reconstruction + idempotence + clamped tightness)
    time_mode: str = "fixed"
    sigma_c: float = 80.0               # the student's constant sigma (fixed / none time modes)
    sigma_max: float = 80.0             # source z = sigma_max eps
    lambda_idem: float = 1.0
    idem_warmup_kimg: float = 5.0       # lambda_idem ramps linearly from 0 over this many kimg
    lambda_flow: float = 1.0
    lambda_dmd: float = 1.0
    lambda_reg: float = 0.25
    dist_rec: str = "l2"
    dist_idem: str = "l2"
    dist_flow: str = "l2"
    dist_reg: str = "l2"
    flow_steps: int = 18                # Karras grid size N of L_flow
    score_loss: str = "dmd"             # dmd (normalised score difference) | sid (the SiD generator loss)
    dmd_renoise: float = 0.0            # fraction of DMD/fake samples made by one re-noised step f(sg f(z) + s eps) [R]
    dmd_renoise_range: tuple = (0.2, 5.0)  # s log-uniform in this range
    renoise: dict = dataclasses.field(default_factory=dict)  # {K: re-noising levels} tuned for this preset
    reg_pairs: int = 2000               # teacher Heun pairs for L_reg (and data-free L_rec / L_flow)
    reg_levels: str = "end"             # L_reg inputs: end (z_k only) | trajectory (every Heun state of z_k) [R]
    reg_pair_dtype: str = "float32"     # storage of the L_reg inputs: float32 | float16 | bfloat16 (half the memory)
    data_free: bool = False             # use the teacher's samples as data (always so without a data set)
    grad_clip: float | None = 1.0
    ign_lambdas: tuple = (20.0, 20.0, 2.5)  # IGN variant: rec, idem, tight
    ign_tight_a: float = 1.5

    def validate(self, world_size: int = 1) -> None:
        super().validate(world_size)
        checks = [("variant", self.variant, VARIANTS), ("time_mode", self.time_mode, TIME_MODES),
                  ("score_loss", self.score_loss, ("dmd", "sid")), ("reg_levels", self.reg_levels, LEVELS),
                  ("reg_pair_dtype", self.reg_pair_dtype, tuple(PAIR_DTYPES))]
        checks += [(name, getattr(self, name), DISTANCES) for name in ("dist_rec", "dist_idem", "dist_flow", "dist_reg")]
        for name, value, options in checks:
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        if self.dropout:
            raise ValueError(f"SIGN needs dropout 0 (f and its copy must be the same function), got {self.dropout}")
        lo, hi = self.dmd_renoise_range
        if not (0 <= self.dmd_renoise <= 1 and 0 < lo <= hi):
            raise ValueError(f"need 0 <= dmd_renoise <= 1 and dmd_renoise_range (lo, hi) with 0 < lo <= hi, got "
                             f"dmd_renoise={self.dmd_renoise}, dmd_renoise_range={self.dmd_renoise_range}")
        for steps in self.renoise:
            renoise_sigmas(int(steps), self.renoise)
        if self.augment:
            raise ValueError(f"augment={self.augment}: SIGN's fake-score step has no augmentation (SiD only)")
        if self.fake_updates < 1 or self.flow_steps < 2 or self.reg_pairs < 1:
            raise ValueError("fake_updates >= 1, flow_steps >= 2 and reg_pairs >= 1 are required")


SIGN_PRESETS = {
    # measured on the mixture (README): the estimated time mode, trajectory pairs and re-noised DMD samples make
    # 2-step sampling (re-noise 0.2) no worse than one step on every exact metric; the lists were tuned by FD
    "mixture": dict(kimg=40.0, lr=1e-4, glr=1e-4, ema_halflife_kimg=4.0, idem_warmup_kimg=8.0, reg_pairs=2000,
                    time_mode="estimated", reg_levels="trajectory", dmd_renoise=0.25, dmd_renoise_range=(0.1, 1.0),
                    renoise={2: [0.2], 3: [0.4, 0.2], 4: [1.0, 0.4, 0.2]}),
    **{name: dict(dropout=0.0, lr=1e-5, glr=1e-5, idem_warmup_kimg=1280.0, reg_pairs=50_000, augment=0.0)
       for name in PRESETS if name != "mixture"},  # SIGN's fake-score step has no augmentation (docs/sign.md §4.6)
}


def sign_config(name: str, **overrides) -> SIGNConfig:
    """SIGN configuration for preset ``name`` (the SiD preset's batch, EMA and schedule, SIGN's defaults)."""
    return make_config(SIGNConfig, name, dict(SIGN_PRESETS.get(name, {}), out=f"runs/sign-{name}"), overrides)
