"""SiD distillation: the trainer, its configuration and presets, and the embedded digit-mixture target."""
from sidkernels.distill.config import PRESETS, DistillConfig, preset_config
from sidkernels.distill.trainer import SiDTrainer

__all__ = ["PRESETS", "DistillConfig", "SiDTrainer", "preset_config"]
