"""Figures for the demo: time answers' timelines drawn with PIL (a demo answer waits for them), and as plain
matplotlib (Agg, no pyplot) find-this-object timelines and where the memory's tokens come from. Time axes read m:ss (h:mm:ss past an hour). Nothing here imports Gradio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from PIL import Image, ImageDraw

from longvmnet.demo.render import clock, font

LINE, EVEN, SPAN, MATCH = "#1f77b4", "#d62728", "#2ca02c", "#ff5a00"
# Fixed margins (fractions of the figure) fit these one-axes figures; a layout engine would double the drawing
# time of a demo answer.
MARGINS = {"left": 0.08, "right": 0.98, "bottom": 0.2, "top": 0.88}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(**MARGINS)
    return fig


def _time_axis(ax, label: str = "time in the video (m:ss)") -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x)))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 5, 6, 10]))
    ax.set_xlabel(label)


def timeline(
    times: Sequence[float],
    inside_scores: Sequence[float],
    span: tuple[float, float],
    *,
    title: str | None = None,
    size: tuple[int, int] = (800, 280),
) -> np.ndarray:
    """The probability that the activity is under way at each time of the query range (what the span is read
    from: one of the runs with the largest sums of logits, `inference.rerank`), the predicted span shaded, as
    an RGB image (h, w, 3).

    Drawn with PIL in a few milliseconds in the server's own thread: the matplotlib figure it replaces took
    40 ms in a worker process, and under 8 clients time answers queued behind it (issue 19)."""
    w, h = size
    left, right, top, bottom = 40, w - 14, 30, h - 46
    x0, x1 = min(times[0], span[0]), max(times[-1], span[1])
    x1 = max(x1, x0 + 1e-3)
    px = lambda t: left + (t - x0) / (x1 - x0) * (right - left)  # noqa: E731
    py = lambda p: bottom - p / 1.02 * (bottom - top)  # noqa: E731
    img = np.full((h, w, 3), 255, np.uint8)
    a, b = int(round(px(span[0]))), int(round(px(span[1])))
    img[top:bottom, a : max(b, a + 1)] = _tint(SPAN, 0.25)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    small, large = font(11), font(13)
    _dashed(draw, left, right, py(0.5))  # even odds
    draw.line([(px(t), py(float(p))) for t, p in zip(times, inside_scores)], fill=LINE, width=2)
    draw.rectangle([left, top, right, bottom], outline="black", width=1)
    for t in time_ticks(x0, x1):
        x = px(t)
        draw.line([(x, bottom), (x, bottom + 4)], fill="black")
        draw.text((x, bottom + 6), clock(t), fill="black", font=small, anchor="mt")
    for p in (0.0, 0.5, 1.0):
        draw.line([(left - 4, py(p)), (left, py(p))], fill="black")
        draw.text((left - 6, py(p)), f"{p:g}", fill="black", font=small, anchor="rm")
    draw.text(((left + right) / 2, h - 6), "time in the video (m:ss)", fill="black", font=large, anchor="md")
    title = title or f"Probability that it is under way; predicted span {clock(span[0])} to {clock(span[1])}"
    draw.text(((left + right) / 2, top - 6), title, fill="black", font=large, anchor="md")
    x, y = right - 118, top + 6  # the legend
    draw.rectangle([x - 6, y - 4, right - 6, y + 50], fill="white", outline="#cccccc")
    for i, label in enumerate(("predicted span", "under way", "even odds")):
        yy = y + 8 + 16 * i
        if i == 0:
            draw.rectangle([x, yy - 4, x + 18, yy + 4], fill=_tint(SPAN, 0.25))
        elif i == 1:
            draw.line([(x, yy), (x + 18, yy)], fill=LINE, width=2)
        else:
            _dashed(draw, x, x + 18, yy)
        draw.text((x + 24, yy), label, fill="black", font=small, anchor="lm")
    return np.asarray(pil)


def time_ticks(start: float, end: float, most: int = 8) -> list[float]:
    """Round tick times (seconds) over [start, end]: the smallest of 1 s ... 2 h steps giving <= `most` ticks."""
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
    step = next((s for s in steps if (end - start) / s <= most), steps[-1])
    first = math.ceil(start / step) * step
    return [float(first + i * step) for i in range(int((end - first) // step) + 1)]


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float) -> None:
    """The even-odds line: 5-px dashes every 10 px from x0 to x1."""
    for x in range(int(x0), int(x1), 10):
        draw.line([(x, y), (min(x + 5, x1), y)], fill=EVEN, width=1)


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def _tint(colour: str, alpha: float) -> tuple[int, int, int]:
    return tuple(int(round(255 * (1 - alpha) + c * alpha)) for c in _rgb(colour))


def save_image(image: np.ndarray, path: str | Path) -> str:
    """Write an RGB image as a PNG (light compression: a demo answer waits for it). -> its path"""
    Image.fromarray(image).save(path, format="PNG", compress_level=1)
    return str(path)


def find_timeline(
    times: Sequence[float],
    scores: Sequence[float],
    best: Sequence[float],
    *,
    start: float,
    end: float,
    title: str | None = None,
) -> Figure:
    """Find this object: per memory frame, its best token's similarity to the crop (one stem per frame), the
    best matches' frames marked ("best matches")."""
    fig = _figure(8, 2.8)
    ax = fig.add_subplot()
    if len(times):
        ax.vlines(times, 0, scores, color=LINE, lw=1.2, label="best token of the frame")
        ax.plot(times, scores, "o", color=LINE, ms=2.5)
        at = {round(t, 3): s for t, s in zip(times, scores)}
        marked = [t for t in best if round(t, 3) in at]
        ax.plot(marked, [at[round(t, 3)] for t in marked], "v", color=MATCH, ms=8, label="best matches")
    ax.set_xlim(start, max(end, start + 1e-3))
    top = max([0.0, *scores])
    ax.set_ylim(min(0.0, *scores) if len(scores) else 0.0, max(1e-3, top * 1.12))
    _time_axis(ax)
    ax.set_ylabel("cosine similarity")
    ax.set_title(title or "Where the object appears: similarity of the memory's tokens to the crop")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def memory_histogram(
    times: Sequence[float], duration_s: float, *, bins: int = 60, tokens_per_frame: int | None = None
) -> Figure:
    """Histogram of the memory tokens' source times over the whole video: how many tokens each stretch of
    the video keeps ("memory tokens"); a dashed line at one frame's worth of tokens when given."""
    times = np.asarray(times, dtype=float)
    duration_s = max(float(duration_s), float(times.max(initial=0.0)), 1e-3)
    n_bins = max(1, min(bins, int(math.ceil(duration_s))))
    fig = _figure(8, 2.6)
    ax = fig.add_subplot()
    ax.hist(times, bins=n_bins, range=(0, duration_s), color=SPAN, label="memory tokens")
    if tokens_per_frame:
        ax.axhline(tokens_per_frame, color=EVEN, lw=0.8, ls="--", label="one frame's worth")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(0, duration_s)
    _time_axis(ax)
    ax.set_ylabel(f"tokens per {clock(duration_s / n_bins)} bin")
    ax.set_title(f"Where the {len(times)} memory tokens come from ({len(np.unique(times))} frames)")
    return fig


def save(fig: Figure, path: str | Path, *, dpi: int = 100) -> str:
    """Write the figure as a PNG (light compression: a demo answer waits for it). -> its path"""
    fig.savefig(path, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return str(path)


def draw(kind: str, path: str | Path, /, *args, **kwargs) -> str:
    """One of this module's figures (`find_timeline`, `memory_histogram`), drawn straight to a PNG:
    the demo calls it in its worker processes, away from the server's threads. -> the PNG's path"""
    figures = {"find_timeline": find_timeline, "memory_histogram": memory_histogram}
    return save(figures[kind](*args, **kwargs), path)
