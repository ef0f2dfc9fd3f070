"""SiD distillation: the trainer, its configuration and presets, the embedded digit-mixture target, and SiDA
(the adversarial variant)."""
from sidkernels.distill.config import PRESETS, DistillConfig, preset_config
from sidkernels.distill.sida_config import SiDAConfig, sida_config
from sidkernels.distill.sida_trainer import SiDATrainer
from sidkernels.distill.trainer import SiDTrainer

__all__ = ["PRESETS", "DistillConfig", "SiDAConfig", "SiDATrainer", "SiDTrainer", "preset_config", "sida_config"]
