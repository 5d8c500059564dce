"""`Demo`: the handlers of the demo for one loaded model, in three groups sharing one `Context`."""

from __future__ import annotations

import os
from pathlib import Path

from longvmnet.demo import checkpoint_folder, load_demo_model
from longvmnet.demo.answers import AnswerHandlers
from longvmnet.demo.core import Context, DemoLimits
from longvmnet.demo.frames import FrameHandlers
from longvmnet.demo.memories import MemoryHandlers
from longvmnet.demo.text import knows_panel


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

    @classmethod
    def start(cls, model_or_checkpoint=None, *, limits: DemoLimits = DemoLimits()) -> Demo:
        """The demo of a model, or of a checkpoint (folder or Hub repo id; None: `load_demo_model`'s default),
        its card read from the checkpoint's folder, with its decoding, drawing and build processes started.
        Raises CheckpointError."""
        model = (
            load_demo_model(model_or_checkpoint)
            if model_or_checkpoint is None or isinstance(model_or_checkpoint, (str, os.PathLike))
            else model_or_checkpoint
        )
        demo = cls(model, limits=limits, folder=checkpoint_folder(model))
        demo.worker.warm_up()
        demo.ctx.heavy.warm_up()
        demo.ctx.builder.warm_up()
        return demo

    def knows(self) -> str:
        """The "what this model knows" panel (markdown)."""
        return knows_panel(self.ctx.knows, self.ctx.calibration, self.ctx.find_figures)

    def close(self) -> None:
        self.ctx.close()
