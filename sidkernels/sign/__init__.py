"""SIGN: score-based idempotent distillation (a reconstruction, see docs/sign.md) and the IGN baseline."""
from sidkernels.sign.config import SIGNConfig, sign_config
from sidkernels.sign.sampling import apply_repeatedly, corrupt, inpaint, project, renoise_sigmas, sample_steps
from sidkernels.sign.student import IdempotentStudent, copy_call
from sidkernels.sign.trainer import SIGNTrainer

__all__ = ["IdempotentStudent", "SIGNConfig", "SIGNTrainer", "apply_repeatedly", "copy_call", "corrupt",
           "inpaint", "project", "renoise_sigmas", "sample_steps", "sign_config"]
