"""The demo's handlers: per-user sessions, limits, input checks and one-sentence errors. app.py wires them.

A `Session` (held in gr.State, with a time-to-live) owns one user's memory, the video it was built from and a
private folder that is deleted with it. Builds run one at a time per worker process (a lock here, plus
concurrency_limit=1 in app.py) while queries keep being answered; a failed build leaves the session's
previous memory untouched. Uploads are untrusted: the build decodes in a child process (FrameReader) and every
other decoding (frames, clips, mosaics) runs in a `worker.Worker` child process, so a crashing decoder cannot take
the server down. Every error reaches the user as one sentence (gr.Error).
"""

from __future__ import annotations

import atexit
import functools
import html
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

from longvmnet import inference, render
from longvmnet.hub import DEFAULT_CHECKPOINT, CheckpointError, load_model
from longvmnet.memory import Memory, MemoryFileError
from longvmnet.queries import QueryError
from longvmnet.video import VideoError, VideoLimits, probe
from longvmnet.worker import Worker

log = logging.getLogger(__name__)
HUB_CHECKPOINT = "longvmnet/longvmnet-synth"  # what a Hugging Face Space loads when no checkpoint is given
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
    mosaic_tiles: int = 1024  # memory patches shown in the mosaic (evenly subsampled beyond)
    session_ttl_s: float = 2 * 3600.0  # a session's memory is dropped this long after its last change
    render_timeout_s: float = 300.0  # longest wait for one decoding/drawing job in the worker

    def video(self) -> VideoLimits:
        return VideoLimits(max_pixels=self.max_pixels, max_duration_s=self.max_duration_min * 60.0)


@dataclass(eq=False)
class Session:
    """One user's data. Handlers replace `memory` and `video` only after a build or load succeeds."""

    folder: Path
    memory: Memory | None = None
    video: Path | None = None  # the session's own link (or copy) of the video the memory was built from
    source: str = ""  # "built" or "loaded"
    mosaic: tuple[np.ndarray, int] | None = None  # cached memory mosaic (image, tiles shown)
    picked: np.ndarray | None = None  # the frame shown for drawing a crop box
    corner: tuple[float, float] | None = None  # its first clicked corner
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __deepcopy__(self, memo):  # gr.State may deep-copy values; a session is shared, never duplicated
        return self


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


def load_demo_model(source=None):
    """The model for the demo: `source` (a save_pretrained folder or Hub repo id), else $LONGVMNET_CHECKPOINT,
    else the Hub repo on a Hugging Face Space, else the bundled checkpoint. Raises CheckpointError.
    """
    source = (
        source
        or os.environ.get("LONGVMNET_CHECKPOINT")
        or (HUB_CHECKPOINT if os.environ.get("SPACE_ID") else None)
    )
    if source is None and not Path(DEFAULT_CHECKPOINT, "model.safetensors").is_file():
        raise CheckpointError(
            f"The bundled checkpoint {os.path.relpath(DEFAULT_CHECKPOINT)} is missing; run `make checkpoint` "
            "to train it, or pass --checkpoint with a save_pretrained folder or a Hub repo id such as "
            f"{HUB_CHECKPOINT}."
        )
    return load_model(source)


def _link(src: Path, dst: Path) -> Path:
    """Hard-link `src` to `dst` (no extra disk), copying when they are on different file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


class Demo:
    """The handlers of the demo, for one loaded model. Methods return plain values for Gradio components."""

    def __init__(self, model, *, limits: DemoLimits = DemoLimits(), workdir: str | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.checkpoint = model.fingerprint()  # hashes the weights once, at start
        self.limits = limits
        self.root = Path(tempfile.mkdtemp(prefix="longvmnet-demo-", dir=workdir))
        self.worker = Worker(timeout_s=limits.render_timeout_s)
        self._build_lock = threading.Lock()  # one memory build at a time in this process
        atexit.register(self.close)

    def close(self) -> None:
        self.worker.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ sessions
    def new_session(self) -> Session:
        folder = self.root / f"session-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        return Session(folder)

    @staticmethod
    def close_session(session: Session | None) -> None:
        """gr.State's delete_callback: the session expired or its tab closed."""
        if isinstance(session, Session):
            session.close()

    def _memory(self, session: Session | None) -> Memory:
        if session is None or session.memory is None:
            raise error(NO_MEMORY)
        return session.memory

    def _video(self, session: Session | None) -> Path | None:
        return session.video if session is not None and session.video and session.video.is_file() else None

    def _upload(self, path: str | None, what: str) -> Path:
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

    def _range(self, start, end, memory: Memory) -> tuple[float, float]:
        start = 0.0 if start is None or start == "" else start
        end = memory.meta.duration_s if end is None or end == "" else end
        try:
            return float(start), float(end)
        except (TypeError, ValueError):
            raise error(
                f"The time range must be two numbers of seconds, got {start!r} and {end!r}."
            ) from None

    def _crop(self, crop: str | None) -> np.ndarray:
        if not crop:
            raise error(
                "There is no object crop; upload an image of the object or click two corners on a frame."
            )
        return inference.load_crop(
            self._upload(crop, "an object crop"), max_pixels=self.limits.max_crop_pixels
        )

    def _describe(self, memory: Memory, source: str) -> tuple[str, dict]:
        meta, p = memory.meta, self.config.tokens_per_frame
        text = (
            f"**{meta.video}** ({render.clock(meta.duration_s)}): {meta.frames_seen} frames scanned at "
            f"{meta.fps:g} fps into {memory.size} memory tokens ({memory.size / p:g} frames' worth), "
            f"{'built' if source == 'built' else 'loaded'} in {meta.build_s:.1f} s."
        )
        if meta.skipped_packets:
            text += f" {meta.skipped_packets} damaged packets were skipped."
        info = {
            "video": meta.video,
            "duration_s": round(meta.duration_s, 3),
            "frames_seen": meta.frames_seen,
            "fps": meta.fps,
            "tokens": memory.size,
            "tokens_per_frame": p,
            "build_s": round(meta.build_s, 3),
            "skipped_packets": meta.skipped_packets,
            "checkpoint": meta.checkpoint,
            "source": source,
        }
        return text, info

    def _adopt(self, session: Session, memory: Memory, video: Path | None, source: str) -> None:
        """Make `memory` (and its video) the session's, replacing the previous ones."""
        old = session.video
        local = _link(video, session.folder / f"video-{uuid.uuid4().hex[:8]}" / video.name) if video else None
        if video is None and old is not None and session.memory is not None:
            keep = session.memory.meta.fingerprint == memory.meta.fingerprint and old.is_file()
            local, old = (old, None) if keep else (None, old)
        session.memory, session.video, session.source, session.mosaic = memory, local, source, None
        if old is not None and old != local:
            shutil.rmtree(old.parent, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ memory
    @friendly("building the memory")
    def build_memory(self, video: str | None, session: Session | None, progress=gr.Progress()):
        """Stage 1 on an uploaded video -> (session, summary markdown, details dict)."""
        path = self._upload(video, "a video (MP4, MOV, MKV or WebM) or the example")
        progress(0.0, desc="Starting the decoder")
        start = time.monotonic()

        def report(done: int, total: int) -> None:
            elapsed = time.monotonic() - start
            left = elapsed / done * (total - done) if done else 0.0
            progress((done, total), desc=f"Scanning frames, about {render.clock(left)} left", unit="frames")

        with self._build_lock:
            memory = inference.build_memory(self.model, path, limits=self.limits.video(), progress=report)
        if memory.meta.frames_seen == 0 or memory.size == 0:
            raise error(
                f"No frames could be decoded from {path.name}; re-encode it as MP4 (H.264) and try again."
            )
        session = session if isinstance(session, Session) else self.new_session()
        with session.lock:
            self._adopt(session, memory, path, "built")
        return session, *self._describe(memory, "built")

    @friendly("loading the memory")
    def load_memory(self, memory_file: str | None, video: str | None, session: Session | None):
        """A saved memory (+ optionally the video it was built from) -> (session, summary, details)."""
        path = self._upload(memory_file, "a memory file (.safetensors) saved by this demo")
        c = self.config
        limit = 2 * c.memory_size * (c.d_model * 4 + 20) + 2**20
        if path.stat().st_size > limit:
            raise error(
                f"{path.name} is too large to be a memory of this checkpoint; "
                "choose a memory saved by this demo."
            )
        memory = Memory.load(
            path, expected_size=c.memory_size, expected_dim=c.d_model, checkpoint=self.checkpoint
        )
        meta = memory.meta
        if not (
            math.isfinite(meta.duration_s) and 0 < meta.duration_s <= self.limits.max_duration_min * 60 + 1
        ):
            raise error(
                f"{path.name} describes a video of {meta.duration_s} s, which this demo does not accept."
            )
        if (memory.times < 0).any() or (memory.times > meta.duration_s + 1).any() or meta.fps <= 0:
            raise error(f"{path.name} holds token times outside its video; build the memory again.")
        lo, hi = min(memory.rows.min(), memory.cols.min()), max(memory.rows.max(), memory.cols.max())
        if lo < 0 or hi >= c.grid:
            raise error(
                f"{path.name} holds patch positions outside the {c.grid}x{c.grid} grid; build it again."
            )
        src = self._upload(video, "a video") if video else None
        if src is not None:
            info = self.worker(probe, str(src), self.limits.video())
            if info.fingerprint != meta.fingerprint:
                raise error(
                    f"This memory was built from {meta.video}, not {src.name}; "
                    "upload that video, or clear the video to load the memory alone."
                )
        session = session if isinstance(session, Session) else self.new_session()
        with session.lock:
            self._adopt(session, memory, src, "loaded")
        return session, *self._describe(memory, "loaded")

    @friendly("saving the memory")
    def save_memory(self, session: Session | None) -> str:
        """The session's memory as a .safetensors file to download."""
        memory = self._memory(session)
        stem = re.sub(r"[^\w.-]+", "_", Path(memory.meta.video).stem)[:60] or "video"
        return str(memory.save(session.folder / "saved" / f"{stem}.memory.safetensors"))

    def after_build(self, session: Session | None):
        """Inputs reset for a new memory -> (start, end, frame slider update, memory frame time).

        The memory frame time is the frame with the most tokens in memory.
        """
        if session is None or session.memory is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        duration = round(session.memory.meta.duration_s, 1)
        return 0.0, duration, gr.update(maximum=max(duration, 1.0), value=0.0), self._busiest(session.memory)

    @staticmethod
    def _busiest(memory: Memory) -> float:
        """Time (s) of the frame with the most tokens in memory."""
        values, counts = np.unique(memory.times.numpy(), return_counts=True)
        return round(float(values[counts.argmax()]), 3)

    # ------------------------------------------------------------------------------------------ queries
    @friendly("answering the activity query")
    def ask_activity(self, crop: str | None, start, end, session: Session | None) -> dict[str, float]:
        """What is done to the object in the crop during [start, end] s -> {activity: probability}."""
        memory = self._memory(session)
        start, end = self._range(start, end, memory)
        ans = inference.ask_activity(self.model, memory, self._crop(crop), start, end)
        return dict(ans.activities)

    @friendly("answering the object query")
    def ask_object(self, activity: str | None, start, end, session: Session | None):
        """Where is the object of `activity` during [start, end] s -> (gallery, clip mp4, answer dict)."""
        memory = self._memory(session)
        start, end = self._range(start, end, memory)
        ans = inference.ask_object(self.model, memory, activity or "", start, end)
        answer = {"times": ans.times, "boxes": ans.boxes, "presence": ans.presence, "present": ans.present()}
        video = self._video(session)
        if video is None:
            gr.Warning(
                "The video of this memory is not on the server; load it with the memory to see the boxes."
            )
            return [], None, answer
        clips = session.folder / "clips"
        clips.mkdir(exist_ok=True)
        for old in sorted(clips.glob("*.mp4"), key=lambda p: p.stat().st_mtime)[:-2]:  # keep the newest two
            old.unlink(missing_ok=True)
        out = clips / f"{activity.replace(' ', '_')}-{start:.0f}-{end:.0f}-{uuid.uuid4().hex[:6]}.mp4"
        lim = self.limits
        gallery, clip, _ = self.worker(
            render.object_clip,
            str(video),
            str(out),
            ans.times,
            ans.boxes,
            ans.presence,
            fps=lim.clip_fps,
            max_frames=int(lim.clip_seconds * lim.clip_fps),
            gallery=lim.gallery,
            limits=lim.video(),
        )
        return gallery, clip, answer

    @friendly("answering the time query")
    def ask_time(self, activity: str | None, crop: str | None, start, end, session: Session | None):
        """When is `activity` done to the crop's object during [start, end] s -> (timeline figure, span)."""
        memory = self._memory(session)
        start, end = self._range(start, end, memory)
        ans = inference.ask_time(self.model, memory, activity or "", self._crop(crop), start, end)
        fig = render.timeline(ans.times, ans.inside_scores, (ans.start, ans.end))
        return fig, {"start": ans.start, "end": ans.end, "score": ans.score}

    @staticmethod
    def seek(span: dict | None):
        """Move the video player to the start of a predicted span."""
        if not span or "start" not in span:
            return gr.skip()
        return gr.update(playback_position=float(span["start"]))

    # ------------------------------------------------------------------------------------------ memory view
    @friendly("drawing the memory")
    def show_memory(self, frame_time, session: Session | None):
        """-> (mosaic image, histogram figure, chosen frame with its memory patches, caption markdown).

        `frame_time` (s) picks the frame; empty picks the frame with the most tokens in memory.
        """
        memory = self._memory(session)
        meta, grid, p = memory.meta, self.config.grid, self.config.tokens_per_frame
        times = memory.times.tolist()
        hist = render.memory_histogram(times, meta.duration_s)
        frames = len(set(times))
        caption = f"{memory.size} tokens from {frames} frames of {meta.frames_seen} scanned."
        video = self._video(session)
        if video is None:
            gr.Warning(
                "The video of this memory is not on the server; load it with the memory to see the patches."
            )
            return None, hist, None, caption
        if frame_time is None or frame_time == "":
            frame_time = self._busiest(memory)
        try:
            frame_time = float(frame_time)
        except (TypeError, ValueError):
            raise error(f"The frame time must be a number of seconds, got {frame_time!r}.") from None
        if not (math.isfinite(frame_time) and 0 <= frame_time <= meta.duration_s + 1):
            raise error(
                f"The frame time {frame_time} s is outside the video, which lasts {meta.duration_s:.1f} s."
            )
        lim, rows, cols = self.limits.video(), memory.rows.tolist(), memory.cols.tolist()
        if session.mosaic is None:
            session.mosaic = self.worker(
                render.memory_mosaic,
                str(video),
                times,
                rows,
                cols,
                grid,
                fps=meta.fps,
                max_tiles=self.limits.mosaic_tiles,
                limits=lim,
            )
        mosaic, shown = session.mosaic
        image, ft, kept = self.worker(
            render.memory_frame, str(video), frame_time, times, rows, cols, grid, fps=meta.fps, limits=lim
        )
        caption += (
            f" The mosaic shows {shown} of them, each cut from its source frame and labelled with its time;"
            f" the frame at {ft:.1f} s has {kept} of its {p} patches in memory (outlined)."
        )
        return mosaic, hist, image, caption

    # ------------------------------------------------------------------------------------------ crop drawing
    @friendly("showing the frame")
    def pick_frame(self, video: str | None, frame_time, session: Session | None):
        """The frame at `frame_time` of the uploaded video (else the session's) to draw a box on."""
        src = Path(video) if video else self._video(session)
        if src is None:
            raise error("Upload a video first, then pick a frame to draw the object's box on.")
        session = session if isinstance(session, Session) else self.new_session()
        _, frame = self.worker(
            render.frame_at,
            str(self._upload(str(src), "a video")),
            float(frame_time or 0.0),
            limits=self.limits.video(),
        )
        session.picked, session.corner = frame, None
        return session, frame

    @friendly("drawing the box")
    def click_frame(self, session: Session | None, evt: gr.SelectData):
        """First click: a corner; second: the crop between the two corners -> (session, frame, crop file)."""
        if session is None or session.picked is None:
            raise error("Pick a frame first, then click two opposite corners of the object.")
        x, y = float(evt.index[0]), float(evt.index[1])
        if session.corner is None:
            session.corner = (x, y)
            return session, render.mark_point(session.picked, (x, y)), gr.skip()
        a, session.corner = session.corner, None
        crop = render.crop_box(session.picked, a, (x, y))
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            raise error("The box is too small; click two opposite corners around the object.")
        h, w = session.picked.shape[:2]
        box = [min(a[0], x) / w, min(a[1], y) / h, max(a[0], x) / w, max(a[1], y) / h]
        crops = session.folder / "crops"
        crops.mkdir(exist_ok=True)
        path = render.save_png(crop, crops / f"crop-{uuid.uuid4().hex[:8]}.png")
        return session, render.draw_boxes(session.picked, [box]), path

    @friendly("reading the crop")
    def preview_crop(self, crop: str | None):
        """The crop image as the model will see it (opened with explicit formats and a pixel limit)."""
        return self._crop(crop) if crop else None
