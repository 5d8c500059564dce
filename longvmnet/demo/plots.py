"""Figures for the demo as plain matplotlib (Agg, no pyplot): time answers, find-this-object timelines and where
the memory's tokens come from. Time axes read m:ss (h:mm:ss past an hour). Nothing here imports Gradio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from longvmnet.demo.render import clock

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
) -> Figure:
    """The probability that the activity is under way at each time of the query range (what the span is read
    from: the run with the largest sum of logits), the predicted span shaded ("predicted span")."""
    fig = _figure(8, 2.8)
    ax = fig.add_subplot()
    ax.axvspan(span[0], span[1], color=SPAN, alpha=0.25, label="predicted span")
    ax.plot(times, inside_scores, color=LINE, lw=1.5, label="under way")
    ax.axhline(0.5, color=EVEN, lw=0.8, ls="--", label="even odds")
    ax.set_xlim(min(times[0], span[0]), max(times[-1], span[1]))
    ax.set_ylim(0, 1.02)
    _time_axis(ax)
    ax.set_ylabel("probability")
    ax.set_title(title or f"Predicted span {clock(span[0])}–{clock(span[1])}")
    ax.legend(loc="upper right", fontsize=8)
    return fig


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
    """One of this module's figures (`timeline`, `find_timeline`, `memory_histogram`), drawn straight to a PNG:
    the demo calls it in its worker processes, away from the server's threads. -> the PNG's path"""
    figures = {"timeline": timeline, "find_timeline": find_timeline, "memory_histogram": memory_histogram}
    return save(figures[kind](*args, **kwargs), path)
