"""The demo's logic, split along its jobs; app.py lays out the Gradio components and wires them to it.

  logic     `Demo`: the handlers for one model, in three groups sharing one `Context`; `Demo.start`
  core      limits, per-user sessions, input checks, one-sentence errors, what is known about the checkpoint
  memories  build (stage 1, with a progress bar), load, save and show a memory
  answers   activity, object and time answers with their confidence, evidence and JSON; find this object
  frames    drawing a crop on a frame, the player, the examples' tabs
  text      every sentence shown about a model, a memory or an answer (escaped)
  widgets   component groups the layout repeats (the parts below every answer)
  page      the page's fixed parts: introduction, tab names, CSS, JavaScript
  launch    `python app.py`'s command line and the options of `launch()`
  builder   memory builds in their own low-priority process
  worker    decoding and drawing in child processes (functions of `render`)
  render    drawing as plain numpy / PIL / matplotlib: boxes, clips, timelines, memory views
  plots     matplotlib figures: time answers, find-this-object timelines, where the memory's tokens come from
  load      `python -m longvmnet.demo.load`: the load test (many clients against a running demo)

Uploads are untrusted: the build decodes in a child process (FrameReader) and every other decoding runs in a
`worker.Worker` child process, so a crashing decoder cannot take the server down.

This file stays light (no torch, no Gradio): the drawing processes import `longvmnet.demo.render` through it,
and app.py imports `launch` through it at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from longvmnet.hub import DEFAULT_CHECKPOINT, CheckpointError, load_model

__all__ = ["load_demo_model", "checkpoint_folder", "default_source", "HUB_CHECKPOINT"]
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
