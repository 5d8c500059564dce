"""The demo's memory handlers: build (stage 1, with a progress bar), load, save and show a memory.

Builds run one at a time (`Context.build_lock`, plus concurrency_limit=1 in app.py) in the builder's own
process (`builder.Builder`), so queries keep being answered at full speed; a failed build leaves the session's
previous memory untouched. The views decode in the worker processes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import gradio as gr
import numpy as np

from longvmnet.demo import plots, render
from longvmnet.demo.core import Context, Session, error, friendly
from longvmnet.demo.text import summary
from longvmnet.memory import Memory
from longvmnet.video import probe


def busiest(memory: Memory) -> float:
    """Time (s) of the frame with the most tokens in memory."""
    values, counts = np.unique(memory.times.numpy(), return_counts=True)
    return round(float(values[counts.argmax()]), 3)


class MemoryHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def describe(self, session: Session) -> tuple[str, dict]:
        """-> (summary markdown, details dict) of the session's memory."""
        memory, ctx = session.memory, self.ctx
        meta, p = memory.meta, ctx.config.tokens_per_frame
        stats = ctx.knows.memory
        info = {
            "video": meta.video,
            "duration_s": round(meta.duration_s, 3),
            "frames_seen": meta.frames_seen,
            "fps": meta.fps,
            "tokens": memory.size,
            "unique_tokens": len({(t, r, c) for t, r, c in zip(memory.times.tolist(), memory.rows.tolist(), memory.cols.tolist())}),
            "tokens_per_frame": p,
            "build_s": round(meta.build_s, 3),
            "skipped_packets": meta.skipped_packets,
            "checkpoint": meta.checkpoint,
            "source": session.source,
            "ood_score": None if session.ood is None else round(session.ood, 4),
            "ood_threshold": None if stats is None else round(stats.threshold, 4),
            "out_of_domain": None if session.ood is None else bool(session.ood > stats.threshold),
        }  # fmt: skip
        return summary(memory, session.source, p, session.ood, stats), info

    @friendly("building the memory")
    def build(self, video: str | None, session: Session | None, progress=gr.Progress()):
        """Stage 1 on an uploaded video -> (session, summary markdown, details dict)."""
        ctx = self.ctx
        path = ctx.upload(video, "a video (MP4, MOV, MKV or WebM) or the example")
        progress(0.0, desc="Starting the decoder")
        began = time.monotonic()

        def report(done: int, total: int) -> None:
            elapsed = time.monotonic() - began
            left = elapsed / done * (total - done) if done else 0.0
            progress((done, total), desc=f"Scanning frames, about {render.clock(left)} left", unit="frames")

        with ctx.build_lock:
            memory = ctx.builder.build(path, ctx.limits.video(), progress=report)
        if memory.meta.frames_seen == 0 or memory.size == 0:
            raise error(
                f"No frames could be decoded from {path.name}; re-encode it as MP4 (H.264) and try again."
            )
        progress(1.0, desc="Checking the memory against the training data")
        session = ctx.session(session)
        with session.lock:
            ctx.adopt(session, memory, path, "built")
        return session, *self.describe(session)

    @friendly("loading the memory")
    def load(
        self, memory_file: str | None, video: str | None, session: Session | None, progress=gr.Progress()
    ):
        """A saved memory (+ optionally the video it was built from) -> (session, summary, details)."""
        ctx, c = self.ctx, self.ctx.config
        path = ctx.upload(memory_file, "a memory file (.safetensors) saved by this demo")
        progress(0.1, desc="Reading the memory file")
        if path.stat().st_size > 2 * c.memory_size * (c.d_model * 4 + 20) + 2**20:
            raise error(
                f"{path.name} is too large to be a memory of this checkpoint; choose a memory saved by this demo."
            )
        memory = Memory.load(path, expected_size=c.memory_size, expected_dim=c.d_model, expected_grid=c.grid,
                             checkpoint=ctx.checkpoint)  # fmt: skip
        meta = memory.meta
        if not (
            math.isfinite(meta.duration_s) and 0 < meta.duration_s <= ctx.limits.max_duration_min * 60 + 1
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
        src = ctx.upload(video, "a video") if video else None
        if src is not None:
            progress(0.5, desc="Checking that the video is the memory's")
            info = ctx.worker(probe, str(src), ctx.limits.video())
            if info.fingerprint != meta.fingerprint:
                raise error(
                    f"This memory was built from {meta.video}, not {src.name}; "
                    "upload that video, or clear the video to load the memory alone."
                )
        progress(0.9, desc="Checking the memory against the training data")
        session = ctx.session(session)
        with session.lock:
            ctx.adopt(session, memory, src, "loaded")
        return session, *self.describe(session)

    @friendly("saving the memory")
    def save(self, session: Session | None) -> str:
        """The session's memory as a .safetensors file to download."""
        memory = self.ctx.memory(session)
        path = session.file("saved", memory.meta.video.rsplit(".", 1)[0] or "video", keep=1)
        return str(memory.save(path.with_name(path.name + ".memory.safetensors")))

    def after_build(self, session: Session | None):
        """Inputs reset for a new memory -> (start, end, frame slider update, memory frame time).

        The memory frame time is the frame with the most tokens in memory."""
        if session is None or session.memory is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        duration = round(session.memory.meta.duration_s, 1)
        return 0.0, duration, gr.update(maximum=max(duration, 1.0), value=0.0), busiest(session.memory)

    @friendly("reading the video")
    def video_changed(self, video: str | None):
        """A video was chosen: "To (s)" becomes its end and the frame slider spans it -> (end, slider)."""
        if not video:
            return gr.skip(), gr.skip()
        info = self.ctx.worker(probe, str(self.ctx.upload(video, "a video")), self.ctx.limits.video())
        duration = round(info.duration_s, 1)
        return duration, gr.update(maximum=max(duration, 1.0), value=0.0)

    @friendly("drawing the memory")
    def show(self, frame_time, session: Session | None):
        """-> (mosaic image, histogram PNG, chosen frame with its memory patches, caption markdown).

        `frame_time` (s) picks the frame; empty picks the frame with the most tokens in memory."""
        ctx = self.ctx
        memory = ctx.memory(session)
        meta, grid, p = memory.meta, ctx.config.grid, ctx.config.tokens_per_frame
        times = memory.times.tolist()
        if session.histogram is None or not Path(session.histogram).is_file():  # drawn once per memory
            session.histogram = ctx.worker(plots.draw, "memory_histogram", session.file("views", "histogram", keep=1).with_suffix(".png"),
                                           times, meta.duration_s, tokens_per_frame=p)  # fmt: skip
        hist = session.histogram
        caption = f"{memory.size} tokens from {len(set(times))} frames of {meta.frames_seen} scanned."
        video = ctx.video(session)
        if video is None:
            gr.Warning(
                "The video of this memory is not on the server; load it with the memory to see the patches."
            )
            return None, hist, None, caption
        frame_time = ctx.seconds(frame_time, "frame time", busiest(memory))
        if not 0 <= frame_time <= meta.duration_s + 1:
            raise error(
                f"The frame time {frame_time} s is outside the video, which lasts {meta.duration_s:.1f} s."
            )
        lim, rows, cols = ctx.limits.video(), memory.rows.tolist(), memory.cols.tolist()
        if session.mosaic is None:
            session.mosaic = ctx.heavy(render.memory_mosaic, str(video), times, rows, cols, grid, fps=meta.fps,
                                        max_tiles=ctx.limits.mosaic_tiles, limits=lim)  # fmt: skip
        mosaic, shown = session.mosaic
        image, ft, kept = ctx.worker(render.memory_frame, str(video), frame_time, times, rows, cols, grid,
                                     fps=meta.fps, limits=lim)  # fmt: skip
        caption += (
            f" The mosaic shows {shown} of them, each cut from its source frame and labelled with its time;"
            f" the frame at {render.clock(ft, tenths=True)} ({ft:.1f} s) has {kept} of its {p} patches in memory (outlined)."
        )
        return mosaic, hist, image, caption
