"""Memory builds in their own process, so that queries never wait behind one.

A build is the heaviest work the demo does (decoding and the backbone over every scanned frame). In the
server's process it would take the CPU cores and the interpreter from the queries of every other session.
`Builder` runs builds in one spawned child that holds its own copy of the model, uses `threads` torch threads
and runs at a lower priority (`NICE`): the CPU goes to queries first and builds take what is left. The child
decodes in a grandchild (`FrameReader`), as stage 1 always does. Progress comes back over a queue; a crashed child is replaced for the next build.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import torch

from longvmnet import video as video_module
from longvmnet.memory import Memory
from longvmnet.video import DecoderCrashedError, VideoLimits

NICE = 10  # the builder's scheduling priority below the server's
HOOKS = (video_module._CRASH_ENV,)  # test hooks read by the decoder: the child follows the parent's values

_MODEL = None  # the child's model
_PROGRESS: mp.Queue | None = None


def _init(config: dict, weights: str, threads: int, progress) -> None:
    """The child's model: the parent's config and weights (its fingerprint is the parent's)."""
    global _MODEL, _PROGRESS
    from safetensors.torch import load_file

    from longvmnet.config import ModelConfig
    from longvmnet.model import LongVMNet

    torch.set_num_threads(threads)
    if hasattr(os, "nice"):  # below the server's priority (its decoder child inherits it): queries come first
        os.nice(NICE)
    cfg = ModelConfig(**config)
    model = LongVMNet(replace(cfg, backbone_pretrained=False, backbone_weights=None))  # no download
    model.load_state_dict(load_file(weights))
    model.config = cfg
    _MODEL, _PROGRESS = model.eval(), progress


def _build(video: str, limits: VideoLimits, hooks: dict[str, str | None]) -> Memory:
    from longvmnet import inference

    for key, value in hooks.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def report(done: int, total: int) -> None:
        _PROGRESS.put((done, total))

    return inference.build_memory(_MODEL, video, limits=limits, progress=report)


class Builder:
    """One build at a time in a child process with its own model. `build(video, limits, progress)` blocks the
    calling thread (a Gradio worker thread) until the memory is built, calling `progress(done, total)`."""

    def __init__(self, model, folder: Path, *, threads: int = 1) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / "model.safetensors"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
        self._args = (model.config.to_dict(), str(weights), threads)
        self._pool: ProcessPoolExecutor | None = None
        self._progress = None
        self._lock = threading.Lock()  # one build at a time (its progress queue is the build's own)

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")
            self._progress = ctx.Queue()
            self._pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_init,
                                             initargs=(*self._args, self._progress))  # fmt: skip
        return self._pool

    def warm_up(self) -> None:
        """Start the child and load its model now (in the background), not at the first build."""
        with self._lock:
            self._get().submit(int)

    def build(self, video: str | Path, limits: VideoLimits, progress=None) -> Memory:
        with self._lock:
            pool = self._get()
            while not self._progress.empty():  # a previous build's last messages
                self._progress.get_nowait()
            future = pool.submit(_build, str(video), limits, {k: os.environ.get(k) for k in HOOKS})
            try:
                while True:
                    try:
                        done, total = self._progress.get(timeout=0.2)
                    except queue.Empty:
                        if future.done():
                            break
                        continue
                    if progress is not None:
                        progress(done, total)
                return future.result()
            except BrokenProcessPool as e:
                self._discard()
                raise DecoderCrashedError(
                    "The memory builder stopped while reading the video; the file is probably damaged, "
                    "so re-encode it as MP4 (H.264) and try again."
                ) from e

    def _discard(self, *, wait: bool = False) -> None:
        """Drop the child (a later build starts a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._discard(wait=True)
