"""Long-VMNet: long-form video understanding from a fixed-size memory of sampled visual tokens."""

from longvmnet.config import PRESETS, ModelConfig, preset
from longvmnet.memory import Memory

__all__ = ["PRESETS", "Memory", "ModelConfig", "preset"]
__version__ = "0.1.0"
