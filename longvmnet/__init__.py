"""Long-VMNet: long-form video understanding from a fixed-size memory of sampled visual tokens.

Imports are lazy so that light users (the decoder child process, the CLI's --help) do not pay for torch.
"""

__version__ = "0.1.0"
__all__ = ["PRESETS", "Memory", "ModelConfig", "preset"]


def __getattr__(name: str):
    if name in ("PRESETS", "ModelConfig", "preset"):
        from longvmnet import config

        return getattr(config, name)
    if name == "Memory":
        from longvmnet.memory import Memory

        return Memory
    raise AttributeError(name)
