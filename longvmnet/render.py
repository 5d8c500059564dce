"""Drawing for the demo as plain numpy / PIL / matplotlib (Agg) code: boxes, clips, timelines, memory views.

Nothing here imports Gradio. Images are (h, w, 3) uint8 RGB; boxes are normalised [x1, y1, x2, y2] in [0, 1]
of the full frame (docs/CONTRACTS.md). A memory token (time, row, col) is patch (row, col) of a grid x grid
split of the frame at `time`: the backbone squashes the whole frame to a square, so the same split of the
native frame covers the same content.

The functions that take a video path (`frame_at`, `object_clip`, `memory_mosaic`, `memory_frame`) decode it;
the demo runs them in a child process (see longvmnet.worker.Worker), so they only take picklable arguments.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from longvmnet.video import VideoLimits, iter_frames, probe, read_frames_at, write_video

BOX = (255, 90, 0)  # predicted boxes and highlighted patches
START, END, SPAN = "#1f77b4", "#d62728", "#2ca02c"  # timeline colours
Box = Sequence[float]  # normalised x1, y1, x2, y2


# --------------------------------------------------------------------------------------------- helpers
def clock(seconds: float) -> str:
    """12.3 -> "0:12", 605 -> "10:05", 3723 -> "1:02:03"."""
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@cache
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def display_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `max_side`, both even (for yuv420p)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Normalised xyxy -> int pixel (x1, y1, x2, y2) clipped to the image, with x1 <= x2 and y1 <= y2."""
    x1, x2 = sorted(min(max(float(v), 0.0), 1.0) * width for v in (box[0], box[2]))
    y1, y2 = sorted(min(max(float(v), 0.0), 1.0) * height for v in (box[1], box[3]))
    return (
        min(int(round(x1)), width - 1),
        min(int(round(y1)), height - 1),
        min(int(round(x2)), width - 1),
        min(int(round(y2)), height - 1),
    )


def patch_box(row: int, col: int, grid: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel (x1, y1, x2, y2) of patch (row, col) of a grid x grid split; x2, y2 exclusive."""
    return (col * width // grid, row * height // grid, (col + 1) * width // grid, (row + 1) * height // grid)


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, color, size: int) -> None:
    font = _font(size)
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
    draw.text((x, y), text, fill=(255, 255, 255), font=font)


# --------------------------------------------------------------------------------------------- boxes
def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Box],
    labels: Sequence[str] | None = None,
    *,
    color: tuple[int, int, int] = BOX,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of `image` with each normalised box outlined (inside its bounds) and optionally labelled."""
    h, w = image.shape[:2]
    thickness = thickness or max(2, round(min(h, w) / 100))
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(out)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = box_pixels(box, w, h)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=thickness)
        if labels is not None and labels[i]:
            size = max(9, min(h, w) // 22)
            _label(
                draw,
                (x1 + thickness, max(0, y1 - size - 3) if y1 > size + 3 else y1 + thickness),
                labels[i],
                color,
                size,
            )
    return np.asarray(out)


def stamp(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` in its top-left corner (e.g. the frame's time)."""
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    _label(ImageDraw.Draw(out), (3, 3), text, (0, 0, 0), max(9, min(image.shape[:2]) // 20))
    return np.asarray(out)


# --------------------------------------------------------------------------------------------- frames
def _native_size(video: str, max_side: int, limits: VideoLimits) -> tuple[int, int]:
    info = probe(video, limits)
    return display_size(info.width, info.height, max_side)


def frames_at(
    video: str, times: Sequence[float], *, max_side: int = 480, limits: VideoLimits = VideoLimits()
) -> list[tuple[float, np.ndarray]]:
    """(frame time, frame) nearest each requested time, frames scaled to at most `max_side`.

    Evenly spaced times less than 2 s apart are decoded in one pass; sparse times by seeking.
    """
    times = [float(t) for t in times]
    if not times:
        return []
    size = _native_size(video, max_side, limits)
    gaps = np.diff(sorted(times))
    if len(times) < 3 or np.median(gaps) >= 2.0:
        return read_frames_at(video, times, size, limits=limits)
    step = max(float(np.median(gaps)), 1e-3)
    lo, hi = min(times), max(times)
    decoded = list(iter_frames(video, 1.0 / step, size, start_s=lo, end_s=hi + step, limits=limits))
    if not decoded:
        return read_frames_at(video, times, size, limits=limits)
    at = np.array([t for t, _ in decoded])
    return [decoded[int(np.abs(at - t).argmin())] for t in times]


def frame_at(video: str, time: float, *, max_side: int = 640, limits: VideoLimits = VideoLimits()):
    """(frame time, frame) of the frame nearest `time`, scaled to at most `max_side`."""
    return read_frames_at(video, [float(time)], _native_size(video, max_side, limits), limits=limits)[0]


# --------------------------------------------------------------------------------------------- object answers
def object_clip(
    video: str,
    out_mp4: str,
    times: Sequence[float],
    boxes: Sequence[Box],
    presence: Sequence[float],
    *,
    threshold: float = 0.5,
    fps: float = 5.0,
    max_frames: int = 300,
    gallery: int = 8,
    max_side: int = 384,
    limits: VideoLimits = VideoLimits(),
) -> tuple[list[tuple[np.ndarray, str]], str, int]:
    """Draw an object answer: frames where the object is predicted get its box and score.

    Writes an mp4 of at most `max_frames` frames at `fps` (longer ranges are evenly subsampled, so the clip
    plays faster than real time) and returns (gallery of up to `gallery` (frame, caption) pairs of the
    frames showing the object, path of the mp4, number of frames in it).
    """
    n = len(times)
    if n == 0 or len(boxes) != n or len(presence) != n:
        raise ValueError(
            f"Need as many boxes and presence scores as times, got {len(boxes)}, {len(presence)}, {n}."
        )
    pick = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    present = {int(i) for i in np.flatnonzero(np.asarray(presence) >= threshold)} or {
        int(np.argmax(presence))
    }
    shown = sorted(present)
    shown = [
        shown[int(i)] for i in np.unique(np.linspace(0, len(shown) - 1, min(gallery, len(shown))).round())
    ]
    wanted = sorted(set(pick.tolist()) | set(shown))
    decoded = dict(
        zip(wanted, frames_at(video, [times[i] for i in wanted], max_side=max_side, limits=limits))
    )

    def drawn(i: int) -> np.ndarray:
        frame = stamp(decoded[i][1], clock(times[i]) + f".{int(round(times[i] * 10)) % 10}")
        return draw_boxes(frame, [boxes[i]], [f"{presence[i]:.0%}"]) if i in present else frame

    write_video(out_mp4, (drawn(int(i)) for i in pick), fps)
    captions = [f"{times[i]:.1f} s · {presence[i]:.0%}" for i in shown]
    return [(drawn(i), c) for i, c in zip(shown, captions)], str(out_mp4), len(pick)


# --------------------------------------------------------------------------------------------- time answers
def timeline(
    times: Sequence[float],
    inside_scores: Sequence[float],
    span: tuple[float, float],
    *,
    title: str | None = None,
) -> Figure:
    """The probability that the activity is under way at each time of the query range (what the span is read
    from: the run with the largest sum of logits), the predicted span shaded ("predicted span")."""
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(span[0], span[1], color=SPAN, alpha=0.25, label="predicted span")
    ax.plot(times, inside_scores, color=START, lw=1.5, label="under way")
    ax.axhline(0.5, color=END, lw=0.8, ls="--", label="even odds")
    ax.set_xlim(min(times[0], span[0]), max(times[-1], span[1]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time in the video (s)")
    ax.set_ylabel("probability")
    ax.set_title(title or f"Predicted span {span[0]:.1f}–{span[1]:.1f} s")
    ax.legend(loc="upper right", fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------- memory views
def memory_histogram(times: Sequence[float], duration_s: float, *, bins: int = 60) -> Figure:
    """Histogram of the memory tokens' source times over the whole video."""
    times = np.asarray(times, dtype=float)
    duration_s = max(float(duration_s), float(times.max(initial=0.0)), 1e-3)
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(times, bins=max(1, min(bins, int(math.ceil(duration_s)))), range=(0, duration_s), color=SPAN)
    ax.set_xlim(0, duration_s)
    ax.set_xlabel("time in the video (s)")
    ax.set_ylabel("tokens")
    ax.set_title(f"Where the {len(times)} memory tokens come from")
    return fig


def cut_patches(
    frames: dict[float, np.ndarray],
    times: Sequence[float],
    rows: Sequence[int],
    cols: Sequence[int],
    grid: int,
) -> list[np.ndarray]:
    """Patch (row, col) of the frame at each time (keys of `frames` are frame times; the nearest is used)."""
    keys = np.array(sorted(frames))
    out = []
    for t, r, c in zip(times, rows, cols):
        frame = frames[float(keys[np.abs(keys - t).argmin()])]
        x1, y1, x2, y2 = patch_box(int(r), int(c), grid, frame.shape[1], frame.shape[0])
        out.append(frame[y1:y2, x1:x2])
    return out


def mosaic(
    patches: Sequence[np.ndarray], labels: Sequence[str], *, tile: int = 48, columns: int | None = None
):
    """One tile per patch (resized to tile x tile) with its label underneath, in rows of `columns` tiles."""
    n = len(patches)
    if n == 0:
        raise ValueError("mosaic needs at least one patch.")
    columns = columns or max(1, min(n, int(math.ceil(math.sqrt(n * 1.6)))))
    rows = int(math.ceil(n / columns))
    label_h = max(10, tile // 4)
    cell_w, cell_h = tile + 2, tile + label_h + 2
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(label_h - 2)
    for i, (patch, label) in enumerate(zip(patches, labels)):
        x, y = (i % columns) * cell_w + 1, (i // columns) * cell_h + 1
        sheet.paste(Image.fromarray(np.ascontiguousarray(patch)).resize((tile, tile), Image.BILINEAR), (x, y))
        draw.text((x + tile / 2, y + tile + 1), label, fill=(40, 40, 40), font=font, anchor="ma")
    return np.asarray(sheet)


def memory_mosaic(
    video: str,
    times: Sequence[float],
    rows: Sequence[int],
    cols: Sequence[int],
    grid: int,
    *,
    fps: float,
    max_tiles: int = 1024,
    tile: int = 48,
    max_side: int = 448,
    limits: VideoLimits = VideoLimits(),
) -> tuple[np.ndarray, int]:
    """The memory as a mosaic of its patches, each cut from its source frame and labelled with its time,
    in time order. More than `max_tiles` tokens are evenly subsampled. Returns (image, tiles shown).

    The frames are decoded in one pass at the memory's `fps`, the same sampling that built the memory.
    """
    order = sorted(range(len(times)), key=lambda i: (times[i], rows[i], cols[i]))
    order = [
        order[int(i)] for i in np.unique(np.linspace(0, len(order) - 1, min(max_tiles, len(order))).round())
    ]
    t = [float(times[i]) for i in order]
    wanted = sorted(set(t))
    size = _native_size(video, max_side, limits)
    frames: dict[float, np.ndarray] = {}
    tol = 0.5 / fps
    for ft, frame in iter_frames(video, fps, size, end_s=wanted[-1] + tol, limits=limits):
        near = min(wanted, key=lambda w: abs(w - ft))
        if abs(near - ft) <= tol:
            frames[ft] = frame
    if not frames:
        frames = dict(read_frames_at(video, wanted, size, limits=limits))
    patches = cut_patches(frames, t, [rows[i] for i in order], [cols[i] for i in order], grid)
    return mosaic(patches, [clock(x) for x in t], tile=tile), len(order)


def highlight_patches(
    frame: np.ndarray, cells: Sequence[tuple[int, int]], grid: int, *, dim: float = 0.3, color=BOX
) -> np.ndarray:
    """The frame with the patches not in `cells` darkened and those in `cells` outlined."""
    h, w = frame.shape[:2]
    keep = np.zeros((h, w), dtype=bool)
    for r, c in cells:
        x1, y1, x2, y2 = patch_box(int(r), int(c), grid, w, h)
        keep[y1:y2, x1:x2] = True
    out = np.where(keep[..., None], frame, (frame * dim).astype(np.uint8))
    img = Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for r, c in set((int(r), int(c)) for r, c in cells):
        x1, y1, x2, y2 = patch_box(r, c, grid, w, h)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=color, width=1)
    return np.asarray(img)


def memory_frame(
    video: str,
    time: float,
    times: Sequence[float],
    rows: Sequence[int],
    cols: Sequence[int],
    grid: int,
    *,
    fps: float,
    max_side: int = 448,
    limits: VideoLimits = VideoLimits(),
) -> tuple[np.ndarray, float, int]:
    """The frame nearest `time` with its patches that are in memory highlighted.

    Returns (image, the frame's time, number of its patches in memory).
    """
    ft, frame = frame_at(video, time, max_side=max_side, limits=limits)
    tol = 0.5 / fps
    cells = [(int(r), int(c)) for t, r, c in zip(times, rows, cols) if abs(float(t) - ft) <= tol]
    return highlight_patches(frame, cells, grid), ft, len(set(cells))


def crop_box(frame: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """The region of `frame` between two clicked corners (pixel x, y), clipped to the frame."""
    h, w = frame.shape[:2]
    x1, x2 = sorted(int(round(min(max(v, 0), w))) for v in (a[0], b[0]))
    y1, y2 = sorted(int(round(min(max(v, 0), h))) for v in (a[1], b[1]))
    return frame[y1:y2, x1:x2].copy()


def mark_point(frame: np.ndarray, xy: tuple[float, float], *, color=BOX) -> np.ndarray:
    """A copy of the frame with a cross at pixel (x, y): the first corner of a box being drawn."""
    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    x, y, r = xy[0], xy[1], max(4, min(frame.shape[:2]) // 40)
    draw.line((x - r, y, x + r, y), fill=color, width=2)
    draw.line((x, y - r, x, y + r), fill=color, width=2)
    return np.asarray(img)


def worker_init(parent_pid: int) -> None:
    """Set-up of the demo's drawing processes (longvmnet.worker.Worker): die with the server, even if it is
    killed without cleaning up (Linux PR_SET_PDEATHSIG; elsewhere they exit when their pipe closes)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the server died before the line above
        os._exit(0)


def save_png(image: np.ndarray, path: str | Path) -> str:
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, format="PNG")
    return str(path)
