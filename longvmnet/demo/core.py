"""What every handler of the demo shares: limits, per-user sessions, input checks and one-sentence errors.

A `Session` (held in gr.State, with a time-to-live) owns one user's memory, the video it was built from and a
private folder that is deleted with it. `Context` holds the model and what was read about it once at start
(the model card, the out-of-domain statistics, the calibration, the find-object precision), the worker
processes that decode and draw, and the session folders. Every error reaches the user as one sentence
(gr.Error), HTML-escaped.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import html
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder

from longvmnet import inference
from longvmnet.demo.builder import Builder
from longvmnet.demo.worker import Worker
from longvmnet.explain import calibration, domain, find
from longvmnet.hub import CheckpointError
from longvmnet.memory import Memory, MemoryFileError
from longvmnet.queries import QueryError
from longvmnet.video import VideoError, VideoLimits

log = logging.getLogger("longvmnet.demo")
USER_ERRORS = (VideoError, QueryError, MemoryFileError, CheckpointError)
NO_MEMORY = "There is no memory yet; upload a video and press Build memory, or load a saved memory first."


@dataclass(frozen=True)
class DemoLimits:
    max_upload_mb: float = 500.0  # largest upload (launch(max_file_size=...); checked again in the handlers)
    max_duration_min: float = 60.0  # longest video accepted
    max_pixels: int = 1920 * 1080  # largest video frame (width * height)
    max_crop_pixels: int = inference.MAX_CROP_PIXELS  # largest crop image
    clip_seconds: float = 60.0  # object answer clips: at most this many seconds at clip_fps (else subsampled)
    clip_fps: float = 5.0
    gallery: int = 8  # frames shown for an object answer
    evidence: int = 6  # memory tokens shown as an answer's evidence
    mosaic_tiles: int = 1024  # memory patches shown in the mosaic (evenly subsampled beyond)
    session_ttl_s: float = 2 * 3600.0  # a session's memory is dropped this long after its last change
    max_sessions: int = 32  # live sessions with a memory; beyond, the least recently used idle one is closed
    render_timeout_s: float = 300.0  # longest wait for one decoding/drawing job in the worker
    build_threads: int = 0  # torch threads of the memory builder's process (0: half the CPUs, at least 1)

    def video(self) -> VideoLimits:
        return VideoLimits(max_pixels=self.max_pixels, max_duration_s=self.max_duration_min * 60.0)


@dataclass(eq=False)
class Session:
    """One user's data. Handlers replace `memory` and `video` only after a build or load succeeds."""

    folder: Path
    memory: Memory | None = None
    video: Path | None = None  # the session's own link (or copy) of the video the memory was built from
    source: str = ""  # "built" or "loaded"
    ood: float | None = None  # the memory's out-of-domain score (domain.TokenStats), when known
    mosaic: tuple[np.ndarray, int] | None = None  # cached memory mosaic (image, tiles shown)
    histogram: str | None = None  # cached PNG of where the memory's tokens come from
    picked: np.ndarray | None = None  # the frame shown for drawing a crop box
    corner: tuple[float, float] | None = None  # its first clicked corner
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    evicted: bool = False  # closed to make room for other sessions (`Context.touch`)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def evict(self) -> None:
        """Drop the memory and files (the object stays in its owner's gr.State, which is told on next use)."""
        self.memory = self.video = self.mosaic = self.histogram = self.picked = self.corner = None
        self.evicted = True
        self.close()

    def __deepcopy__(self, memo):  # gr.State may deep-copy values; a session is shared, never duplicated
        return self

    def file(self, kind: str, name: str, *, keep: int = 4) -> Path:
        """A new path in the session's `kind` folder (answers, plots, clips...), keeping its newest `keep`."""
        folder = self.folder / kind
        folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)[: -keep + 1 or None]:
            old.unlink(missing_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", name)[:60] or kind
        return folder / f"{stem}-{uuid.uuid4().hex[:6]}"


def friendly(action: str):
    """Any exception of a handler -> a gr.Error of one sentence, HTML-escaped (the modal renders HTML)."""

    def wrap(fn):
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as e:
                raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from e
            except Exception as e:
                log.exception("Unexpected error while %s", action)
                raise gr.Error(
                    f"Something went wrong while {action} ({type(e).__name__}); try again, "
                    "and report it if it keeps happening.",
                    print_exception=False,
                ) from e

        return handler

    return wrap


def error(message: str) -> gr.Error:
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def link(src: Path, dst: Path) -> Path:
    """Hard-link `src` to `dst` (no extra disk), copying when they are on different file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


class Context:
    """The model and what the demo knows about it, the worker processes and the session folders."""

    def __init__(self, model, *, limits: DemoLimits, folder: str | Path | None, workdir: str | None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.checkpoint = model.fingerprint()  # hashes the weights once, at start
        self.limits = limits
        self.knows = domain.knowledge(folder, self.config, self.checkpoint)
        self.calibration = calibration.load(folder, self.checkpoint)
        found = find.load(folder)
        self.find_figures = found if found and found.get("checkpoint") == self.checkpoint else None
        self.root = Path(tempfile.mkdtemp(prefix="longvmnet-demo-", dir=workdir))
        # Drawing in child processes: quick jobs (evidence frames, plots, one frame) never wait behind the long
        # ones (an object answer's clip, a memory's mosaic), which have a process of their own.
        self.worker = Worker(timeout_s=limits.render_timeout_s)
        self.heavy = Worker(processes=1, timeout_s=limits.render_timeout_s)
        self.crop_tokens = inference.CropTokens(model)  # crops asked about again skip the backbone
        threads = limits.build_threads or max(1, (os.cpu_count() or 2) // 2)
        self.builder = Builder(model, self.root / "builder", threads=threads)
        self.build_lock = threading.Lock()  # one memory build at a time in this process
        self.live: dict[int, Session] = {}  # sessions by id, least recently used first
        self.live_lock = threading.Lock()
        self.swept = 0.0  # last sweep of Gradio's upload folder (`sweep_uploads`)
        atexit.register(self.close)

    def close(self) -> None:
        self.worker.close()
        self.heavy.close()
        self.builder.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __deepcopy__(self, memo):  # gr.State deep-copies its delete_callback, bound here: one shared context
        return self

    # ------------------------------------------------------------------------------------------ sessions
    def new_session(self) -> Session:
        folder = self.root / f"session-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        self.sweep_uploads()
        return Session(folder)

    def sweep_uploads(self, *, older_than_s: float = 30.0) -> int:
        """Every 10 s at most: remove the empty temporary files Gradio's upload route leaves in its upload
        folder (one or two per upload; its own clean-up takes hours to reach them), and the stored videos no
        session links to any more (`stored`). -> files removed"""
        now = time.time()
        if now - self.swept < 10.0:
            return 0
        self.swept, removed, store = now, 0, self.root / "videos"
        for f in [*Path(get_upload_folder()).glob("tmp*"), *store.glob("*")]:
            try:
                st = f.stat()
                if f.parent == store:  # nothing has linked to it for a while (a link changes st_ctime)
                    stale = st.st_nlink == 1 and now - st.st_ctime > older_than_s
                else:
                    stale = f.is_file() and st.st_size == 0 and now - st.st_mtime > older_than_s
                if stale:
                    f.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def session(self, session: Session | None) -> Session:
        session = session if isinstance(session, Session) else self.new_session()
        self.touch(session)
        return session

    def touch(self, session: Session) -> None:
        """Mark the session as just used; past `max_sessions` live ones, close the least recently used idle one."""
        with self.live_lock:
            self.live.pop(id(session), None)
            self.live[id(session)] = session
            session.evicted = False
            while len(self.live) > self.limits.max_sessions:
                idle = next((s for s in self.live.values() if s is not session and not s.lock.locked()), None)
                if idle is None:  # every other session is busy: let the cap wait for the next use
                    break
                del self.live[id(idle)]
                idle.evict()

    def close_session(self, session: Session | None) -> None:
        """gr.State's delete_callback: the session expired or its tab closed."""
        if isinstance(session, Session):
            with self.live_lock:
                self.live.pop(id(session), None)
            session.close()

    def memory(self, session: Session | None) -> Memory:
        if isinstance(session, Session) and session.evicted:
            raise error(
                f"Your memory was closed to make room: this demo keeps at most {self.limits.max_sessions} "
                "memories at once and yours was the least recently used; build or load it again."
            )
        if session is None or session.memory is None:
            raise error(NO_MEMORY)
        self.touch(session)
        return session.memory

    @staticmethod
    def video(session: Session | None) -> Path | None:
        return session.video if session is not None and session.video and session.video.is_file() else None

    def adopt(self, session: Session, memory: Memory, video: Path | None, source: str) -> None:
        """Make `memory` (and its video) the session's, replacing the previous ones."""
        old = session.video
        local = (
            link(self.stored(video), session.folder / f"video-{uuid.uuid4().hex[:8]}" / video.name)
            if video
            else None
        )
        if video is None and old is not None and session.memory is not None:
            keep = session.memory.meta.fingerprint == memory.meta.fingerprint and old.is_file()
            local, old = (old, None) if keep else (None, old)
        session.memory, session.video, session.source = memory, local, source
        session.mosaic = session.histogram = None
        session.ood = self.knows.memory.score(memory.tokens) if self.knows.memory else None
        if old is not None and old != local:
            shutil.rmtree(old.parent, ignore_errors=True)

    def stored(self, video: Path) -> Path:
        """The one copy of a video's content the sessions share (hard links to it): uploads of the same file
        become new files, and each session would otherwise keep its own."""
        digest = hashlib.sha256()
        with video.open("rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
        path = self.root / "videos" / f"{digest.hexdigest()[:32]}{video.suffix.lower()[:8]}"
        if not path.is_file():
            link(video, path)
        return path

    # ------------------------------------------------------------------------------------------ inputs
    def upload(self, path: str | None, what: str) -> Path:
        if not path:
            raise error(f"Choose {what} first.")
        path = Path(path)
        if not path.is_file():
            raise error(f"The uploaded file {path.name} is no longer on the server; upload it again.")
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.limits.max_upload_mb:
            raise error(
                f"{path.name} is {size_mb:.0f} MB, more than the limit of "
                f"{self.limits.max_upload_mb:.0f} MB; upload a smaller file."
            )
        return path

    @staticmethod
    def seconds(value, name: str, default: float) -> float:
        """A number of seconds from an input box (empty: `default`)."""
        if value is None or value == "":
            return float(default)
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise error(f"The {name} must be a number of seconds, got {value!r}.") from None
        if not math.isfinite(out):
            raise error(f"The {name} must be a finite number of seconds, got {value!r}.")
        return out

    def time_range(self, start, end, memory: Memory) -> tuple[float, float]:
        return self.seconds(start, "start time", 0.0), self.seconds(end, "end time", memory.meta.duration_s)

    def crop(self, crop: str | None) -> np.ndarray:
        if not crop:
            raise error(
                "There is no object crop; upload an image of the object or click two corners on a frame."
            )
        return inference.load_crop(
            self.upload(crop, "an object crop"), max_pixels=self.limits.max_crop_pixels
        )

    @torch.inference_mode()
    def crop_ood(self, crop: np.ndarray) -> float | None:
        """The crop's out-of-domain score, when the checkpoint's statistics are known."""
        if self.knows.crop is None:
            return None
        return self.knows.crop.score(self.crop_tokens([crop])[0].float().cpu())

    @staticmethod
    def write_json(session: Session, name: str, data: dict) -> str:
        path = session.file("answers", name).with_suffix(".json")
        path.write_text(json.dumps(data, indent=1) + "\n")
        return str(path)
