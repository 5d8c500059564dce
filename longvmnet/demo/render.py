"""Drawing for the demo as plain numpy / PIL / matplotlib (Agg) code: boxes, clips, timelines, memory views.

Nothing here imports Gradio. Images are (h, w, 3) uint8 RGB; boxes are normalised [x1, y1, x2, y2] in [0, 1]
of the full frame (docs/CONTRACTS.md). A memory token (time, row, col) is patch (row, col) of a grid x grid
split of the frame at `time`: the backbone squashes the whole frame to a square, so the same split of the
native frame covers the same content.

The functions that take a video path (`frame_at`, `object_clip`, `memory_mosaic`, `memory_frame`) decode it;
the demo runs them in a child process (see longvmnet.demo.worker.Worker), so they only take picklable arguments.
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
from PIL import Image, ImageDraw, ImageFont

from longvmnet.video import VideoLimits, iter_frames, probe, read_frames_at, write_video

BOX = (255, 90, 0)  # predicted boxes and highlighted patches
Box = Sequence[float]  # normalised x1, y1, x2, y2


# --------------------------------------------------------------------------------------------- helpers
def clock(seconds: float, *, tenths: bool = False) -> str:
    """12.3 -> "0:12", 605 -> "10:05", 3723 -> "1:02:03"; with `tenths` 12.34 -> "0:12.3"."""
    if tenths:
        whole, tenth = divmod(int(round(max(0.0, seconds) * 10)), 10)
        return f"{clock(whole)}.{tenth}"
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@cache
def font(size: int) -> ImageFont.ImageFont:
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
    face = font(size)
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=face)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=color)
    draw.text((x, y), text, fill=(255, 255, 255), font=face)


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


def band(image: np.ndarray, text: str) -> np.ndarray:
    """`image` under a black band holding `text` (e.g. the frame's time): nothing of the frame is covered.
    The band's height is even, so an even-sized frame stays even (yuv420p)."""
    h, w = image.shape[:2]
    size = max(10, min(h, w) // 18)
    height = (size + 8) // 2 * 2
    out = Image.new("RGB", (w, h + height), (0, 0, 0))
    out.paste(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)), (0, height))
    ImageDraw.Draw(out).text((4, (height - size) // 2), text, fill=(255, 255, 255), font=font(size))
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
    present: Sequence[int] | None = None,
    threshold: float = 0.5,
    fps: float = 5.0,
    max_frames: int = 300,
    gallery: int = 8,
    max_side: int = 384,
    limits: VideoLimits = VideoLimits(),
) -> tuple[list[tuple[np.ndarray, str]], str, int]:
    """Draw an object answer: frames where the object is predicted (`present`, else a presence of at least
    `threshold`) get its box and score.

    Every frame gets a band above it with its time (and the presence): the box is never covered. Writes an mp4
    of at most `max_frames` frames at `fps` (longer ranges are evenly subsampled, so the clip plays faster
    than real time) and returns (gallery of up to `gallery` (frame, None) pairs of the frames showing the
    object, path of the mp4, number of frames in it).
    """
    n = len(times)
    if n == 0 or len(boxes) != n or len(presence) != n:
        raise ValueError(
            f"Need as many boxes and presence scores as times, got {len(boxes)}, {len(presence)}, {n}."
        )
    pick = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    if present is not None:  # the answer's own frames (queries.ObjectAnswer.present)
        present = {int(i) for i in present} or {int(np.argmax(presence))}
    else:
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
        frame, text = decoded[i][1], clock(times[i], tenths=True)
        if i in present:
            frame, text = draw_boxes(frame, [boxes[i]]), f"{text} · present {presence[i]:.0%}"
        return band(frame, text)

    write_video(out_mp4, (drawn(int(i)) for i in pick), fps, preset="ultrafast")  # drawn while asked for
    return [(drawn(i), None) for i in shown], str(out_mp4), len(pick)


# --------------------------------------------------------------------------------------------- memory views
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
    face = font(label_h - 2)
    for i, (patch, label) in enumerate(zip(patches, labels)):
        x, y = (i % columns) * cell_w + 1, (i // columns) * cell_h + 1
        sheet.paste(Image.fromarray(np.ascontiguousarray(patch)).resize((tile, tile), Image.BILINEAR), (x, y))
        draw.text((x + tile / 2, y + tile + 1), label, fill=(40, 40, 40), font=face, anchor="ma")
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
    frame: np.ndarray,
    cells: Sequence[tuple[int, int]],
    grid: int,
    *,
    dim: float = 0.3,
    color=BOX,
    labels: Sequence[str] | None = None,
    width: int = 1,
) -> np.ndarray:
    """The frame with the patches not in `cells` darkened and those in `cells` outlined (and labelled in
    their top-left corner when `labels` are given, one per cell)."""
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
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=color, width=width)
    for (r, c), text in zip(cells, labels or []):
        x1, y1, _, _ = patch_box(int(r), int(c), grid, w, h)
        _label(draw, (x1 + width + 1, y1 + width + 1), text, color, max(9, min(h, w) // 24))
    return np.asarray(img)


def token_frames(
    video: str,
    tokens: Sequence[tuple[float, int, int]],
    grid: int,
    *,
    fps: float,
    max_frames: int = 6,
    max_side: int = 320,
    tile: int = 64,
    limits: VideoLimits = VideoLimits(),
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw memory tokens (time, row, col), best first, as evidence: a mosaic of their patches labelled
    "#rank m:ss", and up to `max_frames` of their frames (best first) with their patches outlined and
    numbered, the rest dimmed, under a band with the frame's time. -> (mosaic, frames)"""
    tol = 0.5 / fps
    groups: list[tuple[float, list[int]]] = []  # (frame time, ranks of its tokens)
    for rank, (t, _, _) in enumerate(tokens):
        for ft, ranks in groups:
            if abs(ft - t) <= tol:
                ranks.append(rank)
                break
        else:
            groups.append((float(t), [rank]))
    decoded = dict(
        zip(range(len(groups)), frames_at(video, [g[0] for g in groups], max_side=max_side, limits=limits))
    )
    patches, frames = [], []
    for i, (ft, ranks) in enumerate(groups):
        frame = decoded[i][1]
        cells = [(tokens[r][1], tokens[r][2]) for r in ranks]
        patches += [
            (r, p) for r, p in zip(ranks, cut_patches({ft: frame}, [ft] * len(cells), *zip(*cells), grid))
        ]
        if i < max_frames:
            numbers = ", ".join(f"#{r + 1}" for r in ranks)
            lit = highlight_patches(frame, cells, grid, dim=0.55, labels=[f"{r + 1}" for r in ranks], width=2)
            frames.append(band(lit, f"{clock(ft, tenths=True)} · {numbers}"))
    patches.sort(key=lambda x: x[0])
    labels = [f"#{r + 1} {clock(tokens[r][0])}" for r, _ in patches]
    return mosaic([p for _, p in patches], labels, tile=tile), frames


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
    """Set-up of the demo's drawing processes (longvmnet.demo.worker.Worker): die with the server, even if it is
    killed without cleaning up (Linux PR_SET_PDEATHSIG; elsewhere they exit when their pipe closes)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the server died before the line above
        os._exit(0)


def save_png(image: np.ndarray, path: str | Path) -> str:
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, format="PNG")
    return str(path)
