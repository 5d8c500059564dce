"""The demo's logic, split along its jobs; app.py wires it to Gradio components.

  core      limits, per-user sessions, input checks, one-sentence errors, what is known about the checkpoint
  memories  build (stage 1, with a progress bar), load, save and show a memory
  answers   activity, object and time answers with their confidence, evidence and JSON; find this object
  frames    drawing a crop on a frame, the player, the examples' tabs
  text      every sentence shown (escaped)

Uploads are untrusted: the build decodes in a child process (FrameReader) and every other decoding runs in a
`worker.Worker` child process, so a crashing decoder cannot take the server down.
"""

from __future__ import annotations

import os
from pathlib import Path

from longvmnet.demo.answers import AnswerHandlers
from longvmnet.demo.core import Context, DemoLimits, Session
from longvmnet.demo.frames import FrameHandlers, read_examples
from longvmnet.demo.memories import MemoryHandlers
from longvmnet.demo.text import knows_panel
from longvmnet.hub import DEFAULT_CHECKPOINT, CheckpointError, load_model

__all__ = [
    "Demo",
    "DemoLimits",
    "Session",
    "load_demo_model",
    "checkpoint_folder",
    "read_examples",
    "HUB_CHECKPOINT",
]
HUB_CHECKPOINT = "longvmnet/longvmnet-synth"  # what a Hugging Face Space loads when no checkpoint is given
CARD_FILES = ["README.md", "domain.json", "calibration.json", "find.json"]


def default_source(source=None) -> str | None:
    """`source`, else $LONGVMNET_CHECKPOINT, else the Hub repo on a Hugging Face Space, else None (bundled)."""
    return (
        source
        or os.environ.get("LONGVMNET_CHECKPOINT")
        or (HUB_CHECKPOINT if os.environ.get("SPACE_ID") else None)
    )


def load_demo_model(source=None):
    """The model for the demo (see `default_source`). Raises CheckpointError."""
    source = default_source(source)
    if source is None and not Path(DEFAULT_CHECKPOINT, "model.safetensors").is_file():
        raise CheckpointError(
            f"The bundled checkpoint {os.path.relpath(DEFAULT_CHECKPOINT)} is missing; run `make checkpoint` "
            "to train it, or pass --checkpoint with a save_pretrained folder or a Hub repo id such as "
            f"{HUB_CHECKPOINT}."
        )
    return load_model(source)


def checkpoint_folder(model) -> Path | None:
    """Where the model's card and figures are: its local folder, or the Hub repo's files (downloaded when
    reachable; None otherwise, and the demo says what it does not know)."""
    name = str(getattr(model, "name", "") or "")
    if not name:
        return None
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=CARD_FILES))
    except Exception:  # no network, no such files: the panel says what is missing
        return None


class Demo:
    """The handlers of the demo for one loaded model, in three groups sharing one `Context`."""

    def __init__(self, model, *, limits: DemoLimits = DemoLimits(), folder: str | Path | None = None,
                 workdir: str | None = None) -> None:  # fmt: skip
        self.ctx = Context(model, limits=limits, folder=folder, workdir=workdir)
        self.memory = MemoryHandlers(self.ctx)
        self.answers = AnswerHandlers(self.ctx)
        self.frames = FrameHandlers(self.ctx)
        self.limits, self.worker = self.ctx.limits, self.ctx.worker
        self.new_session, self.close_session = self.ctx.new_session, self.ctx.close_session

    def knows(self) -> str:
        """The "what this model knows" panel (markdown)."""
        return knows_panel(self.ctx.knows, self.ctx.calibration, self.ctx.find_figures)

    def close(self) -> None:
        self.ctx.close()
