"""Find this object: where an object crop appears in a video, searched in its memory alone.

The crop goes through the same frozen backbone and projection as the video's frames; the mean of its middle
tokens (3 x 3 of 7 x 7: a crop is cut around its object, its outer tokens show the table and neighbours) is
compared by cosine similarity with every memory token. The timeline is, per memory frame, its best token's
similarity; the matches are the best tokens. No query model is involved, so it works on any video the
backbone can see, trained classes or not.

Measured on a benchmark (object crops vs annotated appearances; `precision`):

    python -m longvmnet.explain.find --checkpoint checkpoints/longvmnet-synth --data runs/recipe/data \
        --cache runs/recipe/cache --split test          # writes <checkpoint>/find.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longvmnet.inference import crop_tokens
from longvmnet.memory import Memory

FILE = "find.json"  # the measured precision, next to the checkpoint's weights


@dataclass(frozen=True)
class Found:
    times: list[float]  # every memory frame's time in the range (s), ascending
    scores: list[float]  # its best token's cosine similarity to the crop
    matches: list[int]  # memory indices of the best tokens, best first


def middle(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """The crop's tokens around the middle of its grid (3 x 3 of 7 x 7). (p, d) -> (q, d)"""
    half = max(1, grid // 4)
    lo, hi = grid // 2 - half, grid // 2 + half + 1
    return tokens.unflatten(0, (grid, grid))[lo:hi, lo:hi].flatten(0, 1)


@torch.inference_mode()
def crop_vector(model, crop: np.ndarray, *, crops=None) -> torch.Tensor:
    """An object crop (h, w, 3) uint8 -> (d,) unit vector: the mean of its middle projected tokens.
    `crops` maps crops to tokens (default `crop_tokens`; an `inference.CropTokens` cache)."""
    tokens = (crops([crop]) if crops is not None else crop_tokens(model, [crop]))[0].float().cpu()
    return F.normalize(middle(tokens, model.config.grid).mean(0), dim=0)


def similarity(memory: Memory, vector: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every memory token to a unit vector. -> (m,)"""
    return F.normalize(memory.tokens.float(), dim=-1) @ vector.float()


def find(memory: Memory, vector: torch.Tensor, *, start: float = 0.0, end: float | None = None,
         k: int = 8) -> Found:  # fmt: skip
    """Where the object of `vector` (crop_vector) appears in [start, end] s of the memory's video."""
    end = memory.meta.duration_s if end is None else end
    sims = similarity(memory, vector)
    inside = (memory.times >= start - 1e-3) & (memory.times <= end + 1e-3)
    times = torch.unique(memory.times[inside])
    scores = [float(sims[inside & (memory.times == t)].max()) for t in times]
    order = sims.masked_fill(~inside, float("-inf")).argsort(descending=True)[: min(k, int(inside.sum()))]
    return Found([round(float(t), 3) for t in times], [round(s, 4) for s in scores], order.tolist())


# ---------------------------------------------------------------------------- measured on a benchmark
def on_object(annotation: dict, oid: str, t: float, row: int, col: int, grid: int) -> bool:
    """Does patch (row, col) of the frame at t s show the object (its centre inside the object's box)?"""
    boxes = annotation["objects"][oid]["boxes"]
    box = boxes[min(int(round(t * annotation["fps"])), len(boxes) - 1)]
    x, y = (col + 0.5) / grid, (row + 0.5) / grid
    return box is not None and box[0] <= x < box[2] and box[1] <= y < box[3]


def visible(annotation: dict, oid: str, t: float) -> bool:
    boxes = annotation["objects"][oid]["boxes"]
    return boxes[min(int(round(t * annotation["fps"])), len(boxes) - 1)] is not None


@torch.inference_mode()
def precision(model, data, split: str, memories, *, k: int = 10, times: int = 5) -> dict:
    """For the first crop of every object of the split's videos that the memory shows at least once:
    token precision@k (the share of the k best tokens whose patch lies on the object at the token's time),
    time precision@`times` (the share of the best frames of the timeline at which the object is in view),
    each with its chance level (the same share over all memory tokens / frames). `memories(video)` -> Memory.
    """
    from longvmnet.inference import load_crop

    g = model.config.grid
    rows = {"token": [], "token_chance": [], "time": [], "time_chance": []}
    for video in data.split(split):
        ann, memory = video.annotations, memories(video)
        t, r, c = memory.times.tolist(), memory.rows.tolist(), memory.cols.tolist()
        for oid, crops in ann["crops"].items():
            hits = np.array([on_object(ann, oid, *x, g) for x in zip(t, r, c)])
            if not crops or not hits.any():
                continue
            found = find(memory, crop_vector(model, load_crop(data.path(crops[0]["file"]))), k=k)
            best = np.argsort(-np.array(found.scores), kind="stable")[:times]
            rows["token"].append(hits[found.matches].mean())
            rows["token_chance"].append(hits.mean())
            rows["time"].append(np.mean([visible(ann, oid, found.times[i]) for i in best]))
            rows["time_chance"].append(np.mean([visible(ann, oid, x) for x in found.times]))
    out = {key: round(float(np.mean(v)), 4) if v else None for key, v in rows.items()}
    return out | {"k": k, "times": times, "crops": len(rows["token"]), "split": split,
                  "videos": len(data.split(split))}  # fmt: skip


def memories_for(model, cache_dir: str | None):
    """Video -> its memory: stage 1 on cached backbone tokens when a feature cache is given, else decoding."""
    if cache_dir:
        from longvmnet.data.features import FeatureCache
        from longvmnet.measure.ladder import memory_from_cache

        cache = FeatureCache(cache_dir, model)
        return lambda video: memory_from_cache(model, cache, video)
    from longvmnet.inference import build_memory

    return lambda video: build_memory(model, video.path)


def load(folder: str | Path | None) -> dict | None:
    """The checkpoint's measured find-object precision (find.json), or None."""
    path = Path(folder) / FILE if folder else None
    try:
        return json.loads(path.read_text()) if path and path.is_file() else None
    except (OSError, ValueError):
        return None


CARD_HEADING = "Find this object (the demo's crop search)"


def card_text(result: dict) -> str:
    """The model card's section: the precision of the crop search on the benchmark, against chance."""
    return (
        f"On the {result['split']} videos ({result['videos']} videos, {result['crops']} object crops; `{result['command']}`): "
        f"{100 * result['token']:.1f}% of the {result['k']} memory tokens most similar to a crop lie on its object "
        f"(chance {100 * result['token_chance']:.1f}%), and {100 * result['time']:.1f}% of the {result['times']} best "
        f"timeline frames show it (chance {100 * result['time_chance']:.1f}%)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure find-this-object on a benchmark; write find.json.")
    parser.add_argument("--checkpoint", default=None, help="folder (default: the bundled checkpoint)")
    parser.add_argument("--data", required=True, help="benchmark folder (benchmark.json, videos, crops)")
    parser.add_argument(
        "--cache", default=None, help="feature cache folder (runs/recipe/cache) to skip decoding"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=None, help=f"default: <checkpoint>/{FILE}")
    args = parser.parse_args(argv)

    from longvmnet.data.rest import ReSTData
    from longvmnet.hub import DEFAULT_CHECKPOINT, load_model

    folder = args.checkpoint or DEFAULT_CHECKPOINT
    model = load_model(folder).eval()
    began = time.perf_counter()
    result = precision(model, ReSTData(args.data), args.split, memories_for(model, args.cache))
    result |= {"checkpoint": model.fingerprint(), "seconds": round(time.perf_counter() - began, 1),
               "command": " ".join(["python -m longvmnet.explain.find", *(argv if argv is not None else sys.argv[1:])])}  # fmt: skip
    out = Path(args.out or Path(folder) / FILE)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if args.out is None:
        from longvmnet.measure.report import set_card_section

        set_card_section(folder, CARD_HEADING, card_text(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
