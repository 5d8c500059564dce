"""The demo's sentences: the "what this model knows" panel, memory summaries, and the notes under every answer
(confidence, out-of-domain warnings, coverage, evidence). Everything taken from files, uploads or memory
metadata is escaped (`esc`) before it reaches Markdown."""

from __future__ import annotations

import html
import math
import re

from longvmnet.demo.render import clock
from longvmnet.explain.calibration import MAX_T
from longvmnet.explain.domain import Knowledge, TokenStats
from longvmnet.explain.evidence import ACTED, MATCH, Coverage, Evidence
from longvmnet.memory import Memory

WARN = "⚠️"


def esc(text) -> str:
    """Plain text for Markdown: HTML-escaped, Markdown's special characters backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+!|~>-])", r"\\\1", html.escape(str(text), quote=False))


def span(start: float, end: float) -> str:
    return f"{clock(start)}–{clock(end)}"


# ---------------------------------------------------------------------------- the knows panel
def knows_panel(k: Knowledge, calibration: dict | None, find_figures: dict | None) -> str:
    lines = [
        "**Training data.** "
        + esc(k.training_data or "This checkpoint has no model card; its training data is unknown.")
    ]
    lines.append(
        f"**Activities it can name ({len(k.activities)}):** " + ", ".join(esc(a) for a in k.activities) + "."
    )
    if k.accuracy:
        lines.append(f"**Evaluated accuracy** (model card, *{esc(k.accuracy_title)}*; percent):")
        lines.append(accuracy_markdown(k))
    else:
        lines.append("**Evaluated accuracy:** the checkpoint's model card has no results table.")
    lines.append(calibration_sentence(calibration))
    lines.append(domain_sentence(k))
    if find_figures and find_figures.get("token") is not None:
        lines.append(find_sentence(find_figures))
    return "\n\n".join(lines)


def accuracy_markdown(k: Knowledge) -> str:
    """The card's rows as metric x window; the second row (the prior) in brackets."""
    table: dict[str, dict[str, list[str]]] = {}
    windows: list[str] = []
    for i, name in enumerate(k.accuracy_header):
        metric, _, window = name.rpartition(" ")
        windows += [window] if window not in windows else []
        for _, cells in k.accuracy:
            table.setdefault(metric, {}).setdefault(window, []).append(cells[i] if i < len(cells) else "")
    prior = len(k.accuracy) > 1
    rows = ["| metric | " + " | ".join(map(esc, windows)) + " |", "|---" * (len(windows) + 1) + "|"]
    for metric, by in table.items():
        cells = [
            esc(v[0]) + (f" ({esc(v[1])})" if prior and len(v) > 1 else "")
            for v in (by.get(w, [""]) for w in windows)
        ]
        rows.append(f"| {esc(metric)} | " + " | ".join(cells) + " |")
    legend = f"Row: *{esc(k.accuracy[0][0])}*" + (
        f"; in brackets: *{esc(k.accuracy[1][0])}*." if prior else "."
    )
    return "\n".join(rows) + "\n\n" + legend


def calibration_sentence(cal: dict | None) -> str:
    if not cal:
        return ("**Confidence** is the model's raw probability: this checkpoint has no calibration.json "
                "(`python -m longvmnet.explain.calibration`).")  # fmt: skip
    kinds = cal.get("kinds", {})
    where = "test" if any("ece_test_after" in r for r in kinds.values()) else "val"
    parts = []
    for kind, row in kinds.items():
        before, after = row.get(f"ece_{where}_before"), row.get(f"ece_{where}_after")
        fitted = f"T = {row['temperature']:.2f}" + (f", bias {row['bias']:+.2f}" if row.get("bias") else "")
        flat = row["temperature"] >= MAX_T  # the scores barely rank the outcomes: about the base rate for all
        parts.append(f"{esc(kind)} ({fitted}{', its scores barely rank the answers' if flat else ''}): "
                     f"ECE {before:.3f} → {after:.3f}")  # fmt: skip
    return (f"**Confidence** is calibrated on the validation videos (a temperature, with a bias where it "
            f"calibrates better). Expected calibration error on the {where} videos, raw → calibrated: "
            f"{'; '.join(parts)}.")  # fmt: skip


def domain_sentence(k: Knowledge) -> str:
    if k.stale:
        return ("**Out-of-domain check:** off, its statistics (domain.json) belong to another checkpoint; rerun "
                "`python -m longvmnet.explain.domain`.")  # fmt: skip
    if k.memory is None:
        return "**Out-of-domain check:** off, this checkpoint has no domain.json (`python -m longvmnet.explain.domain`)."
    fig = (k.domain_figures or {}).get("memory", {})
    held, real = list(fig.get("held_out", {}).values()), list(fig.get("real", {}).values())
    measured = (f" (held-out synthetic videos score at most {max(held):.2f}, real clips at least {min(real):.2f})"
                if held and real else "")  # fmt: skip
    return (f"**Out-of-domain check:** a video whose memory tokens lie farther than {k.memory.threshold:.2f} from "
            f"the training tokens' statistics{measured} gets a warning, and so does an unusual crop.")  # fmt: skip


def find_sentence(f: dict) -> str:
    return (f"**Find this object**, measured on {f['crops']} object crops of the benchmark's {esc(f['split'])} "
            f"videos: {f['token']:.0%} of the {f['k']} best-matching memory tokens lie on the object "
            f"(chance {f['token_chance']:.0%}); at {f['time']:.0%} of the {f['times']} best frames of the timeline "
            f"the object is in view (chance {f['time_chance']:.0%}).")  # fmt: skip


# ---------------------------------------------------------------------------- memories
def ood_warning(score: float | None, stats: TokenStats | None, what: str) -> str:
    """A warning sentence when `score` is above the threshold, else ""."""
    if score is None or stats is None or score <= stats.threshold:
        return ""
    return (f"{WARN} **Out of domain:** {what} is unlike the training data (token distance {score:.2f}, "
            f"threshold {stats.threshold:.2f}); answers about it are unreliable.")  # fmt: skip


def summary(memory: Memory, source: str, per_frame: int, ood: float | None, stats: TokenStats | None) -> str:
    meta = memory.meta
    text = (f"**{esc(meta.video)}** ({clock(meta.duration_s)}): {meta.frames_seen} frames scanned at {meta.fps:g} "
            f"fps into {memory.size} memory tokens ({memory.size / per_frame:g} frames' worth), "
            f"{'built' if source == 'built' else 'loaded'} in {meta.build_s:.1f} s.")  # fmt: skip
    if meta.skipped_packets:
        text += f" {meta.skipped_packets} damaged packets were skipped."
    expected = max(1, math.ceil(meta.duration_s * meta.fps - 1e-6))
    if meta.frames_seen < 0.9 * expected and expected - meta.frames_seen >= 2:
        text += (f"\n\n{WARN} **Cut short:** only the first {clock(meta.frames_seen / meta.fps)} of "
                 f"{clock(meta.duration_s)} could be decoded (the file looks truncated or damaged after that); "
                 "answers cover that part only. Upload the complete file to cover the rest.")  # fmt: skip
    if ood is not None and stats is not None:
        warning = ood_warning(ood, stats, "this video")
        text += "\n\n" + (
            warning or f"In domain: token distance {ood:.2f} (threshold {stats.threshold:.2f})."
        )
    return text


# ---------------------------------------------------------------------------- answers
def coverage_sentence(c: Coverage) -> str:
    text = f"The memory holds {c.tokens} tokens from {c.frames} frames in {span(c.start, c.end)}"
    return text + ("; answers there are weak." if c.weak else ".")


def evidence_sentence(e: Evidence | None, has_video: bool) -> str:
    if e is None or not e.tokens:
        return "No evidence: this model scores no memory tokens for this kind of query."
    what = {
        MATCH: "the model's match score",
        ACTED: "cosine similarity to the crop, in the frames the model reads as its object acted on",
    }.get(e.source, "cosine similarity to the crop (the model scores no tokens for this query)")
    where = ", ".join(f"{clock(t.time, tenths=True)}" for t in e.tokens)
    see = "" if has_video else " Load the video with the memory to see their patches."
    return f"**Evidence:** the {len(e.tokens)} memory tokens that weighed most, by {what}, from {where}.{see}"


def note(headline: str, *lines: str) -> str:
    return "\n\n".join([headline, *[x for x in lines if x]])
