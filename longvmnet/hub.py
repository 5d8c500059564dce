"""Loading checkpoints from a local folder or a Hugging Face Hub repo id, with clear errors.

torch and the model are imported by `load_model` alone: the demo's package and its drawing processes read
DEFAULT_CHECKPOINT and CheckpointError from here without paying for them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from longvmnet.model import LongVMNet

DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parent.parent / "checkpoints" / "longvmnet-synth")


class CheckpointError(RuntimeError):
    pass


def load_model(source: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> LongVMNet:
    """A model from a `save_pretrained` folder or a Hub repo id ("org/name"), loaded strictly, in eval mode.

    `source` defaults to $LONGVMNET_CHECKPOINT, then to the bundled checkpoint.
    """
    from longvmnet.model import LongVMNet

    source = str(source or os.environ.get("LONGVMNET_CHECKPOINT") or DEFAULT_CHECKPOINT)
    path = Path(source).expanduser()
    is_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if is_local:
        if not path.is_dir():
            raise CheckpointError(
                f"The checkpoint folder {source} does not exist; pass a folder made by save_pretrained "
                "or a Hugging Face Hub repo id such as org/name."
            )
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise CheckpointError(
                f"The checkpoint folder {source} needs config.json and model.safetensors; "
                "pick a folder made by save_pretrained."
            )
    try:
        model = LongVMNet.from_pretrained(str(path) if is_local else source, strict=True)
    except CheckpointError:
        raise
    except Exception as e:  # hub errors, missing/unexpected keys, shape mismatches, corrupt files
        if "reader." in str(e):  # readers of an older layout (another width, or a reader it lacks)
            raise CheckpointError(
                f"The checkpoint {source} has readers of an older layout (fit by an older longvmnet); refit "
                f"them: python -m longvmnet.train.reader --checkpoint FOLDER --data BENCHMARK."
            ) from e
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        where = "folder" if is_local else "Hub repo"
        raise CheckpointError(
            f"Could not load the checkpoint {source} from its {where} ({reason}); check the name, "
            "your network or HF_ENDPOINT, or use a local folder."
        ) from e
    model.name = source
    return model.to(device).eval()
