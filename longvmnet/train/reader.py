"""The reader phase (ours): fit the window reader and the segment reader (`model/reader.py`) on the training
videos, after the decoder phase, everything else fixed.

Each query's window features are computed once, on the memory the model itself writes from the video's cached
tokens (stage 1, as evaluation runs it), with the activity head's logits on that query; the reader is then fit
as a one-hidden-layer classifier of the activities on those features (multi-label cross-entropy of the head's
logits plus the reader's), in a few seconds. The segment reader is fit beside it on the same memories: the
training videos' annotated segments (and jittered copies) named by their activities, spans that touch no
segment named none.

    python -m longvmnet.train.reader --checkpoint runs/recipe/decoder --data runs/recipe/data [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem, multi_hot
from longvmnet.measure.ladder import memory_from_cache
from longvmnet.model.reader import span_features
from longvmnet.queries import collate_ranges


def segment_samples(tokens: torch.Tensor, times: torch.Tensor, annotation: dict, activities: list[str],
                    rng: np.random.Generator, jitter: int = 8) -> tuple[list[torch.Tensor], list[torch.Tensor]]:  # fmt: skip
    """The segment reader's training rows from one video's memory (tokens (m, d), times (m,)): each annotated
    segment's span and `jitter` copies with its ends moved by up to a quarter of its length, named by its
    activity; and spans of 20-60 s that touch no segment (up to 3 per segment), named none (the last class).
    -> features (`span_features`), one-hot targets (c + 1,)"""
    segments, duration = annotation["segments"], float(annotation["duration"])
    spans, names = [], []
    for seg in segments:
        length = seg["end"] - seg["start"]
        for k in range(jitter + 1):
            d0, d1 = (0.0, 0.0) if k == 0 else rng.uniform(-0.25, 0.25, 2) * length
            spans.append((seg["start"] + d0, seg["end"] + d1))
            names.append(activities.index(seg["activity"]))
    for _ in range(3 * len(segments)):
        length = rng.uniform(20, 60)
        start = rng.uniform(0, max(duration - length, 0.0))
        if not any(s["start"] < start + length and s["end"] > start for s in segments):
            spans.append((start, start + length))
            names.append(len(activities))
    if not spans:
        return [], []
    feats = span_features(tokens, times, spans)
    targets = torch.nn.functional.one_hot(torch.tensor(names), len(activities) + 1).float()
    return list(feats), list(targets)


@torch.inference_mode()
def reader_inputs(model, cache: FeatureCache, data: ReSTData, videos: list[VideoItem], progress: bool = True,
                  batch_size: int = 32) -> dict[str, torch.Tensor]:  # fmt: skip
    """Every activity query of `videos`: the reader's "features" (n, 11 d + 3), the activity head's "logits"
    (n, c) without the reader, and the multi-hot "answers" (n, c); and the segment reader's rows of every
    video (`segment_samples`): "segment_features" (s, 5 d + 1) and "segment_targets" (s, c + 1)."""
    c = model.config
    rows: dict[str, list] = {"features": [], "logits": [], "answers": [], "segment_features": [],
                             "segment_targets": []}  # fmt: skip
    rng = np.random.default_rng(0)
    for v in tqdm(videos, desc="reader: training queries", disable=not progress):
        queries = [q for q in v.queries if q["type"] == "activity"]
        memory = {k: t.to(model.device) for k, t in memory_from_cache(model, cache, v).batched().items()}
        feats, targets = segment_samples(memory["tokens"][0].cpu(), memory["times"][0].cpu(), v.annotations,
                                         c.activities, rng)  # fmt: skip
        rows["segment_features"] += feats
        rows["segment_targets"] += targets
        for at in range(0, len(queries), batch_size):
            part = queries[at : at + batch_size]
            obj = model.project(torch.from_numpy(np.stack([cache.crop(data.path(q["crop"])) for q in part])))
            grid = collate_ranges([(q["start"], q["end"]) for q in part], c.query_fps, c.activity_max_queries)
            mem = {k: t.expand(len(part), *t.shape[1:]) for k, t in memory.items()}
            out = model(mem, "activity", grid["times"], grid["mask"], object_tokens=obj)
            feats = out["reader_features"]
            rows["features"].append(feats.float().cpu())
            rows["logits"].append((out["activity_logits"] - model.reader(feats)).float().cpu())
            rows["answers"].append(
                torch.stack([multi_hot(q["answer"]["activities"], c.activities) for q in part])
            )
    if not rows["answers"] or not rows["segment_targets"]:
        raise ValueError(
            "The reader phase needs activity queries and annotated segments on the training videos."
        )
    out = {k: torch.cat(rows[k]) for k in ("features", "logits", "answers")}
    return out | {k: torch.stack(rows[k]) for k in ("segment_features", "segment_targets")}


def fit_reader(model, inputs: dict[str, torch.Tensor], *, steps: int = 500, lr: float = 1e-3,
               weight_decay: float = 0.1, seed: int = 0, progress: bool = True) -> list[float]:  # fmt: skip
    """Fit `model.reader` on `reader_inputs`, beside the head's logits (`WindowReader.fit`), and
    `model.segment_reader` on the segment rows alone. -> the window reader's loss every 100 steps. The defaults (500 steps, weight decay 0.1, with the model's reader dropout 0.5) read unseen
    videos better than 1500 steps, 0.01 and 0.2, which fit the training queries to near-zero loss (README)."""
    torch.manual_seed(seed)  # the dropout's
    losses = model.reader.fit(inputs["features"], inputs["answers"], inputs["logits"], steps=steps, lr=lr,
                              weight_decay=weight_decay, seed=seed, progress=progress)  # fmt: skip
    model.segment_reader.fit(inputs["segment_features"], inputs["segment_targets"], steps=steps, lr=lr,
                             weight_decay=weight_decay, seed=seed, progress=progress)  # fmt: skip
    model._fingerprint = None  # the weights changed: memories written before are not this checkpoint's
    return losses


def with_reader(model, config) -> torch.nn.Module:
    """A model of `config` (which has the readers) with `model`'s weights; only the readers' may be new (or of
    another width).
    The backbone's weights come with them (none fetched): save it with `save_pretrained(folder, config=config)`
    to keep `config` as it is."""
    from dataclasses import replace

    from longvmnet.model import LongVMNet

    out = LongVMNet(replace(config, backbone_pretrained=False, backbone_weights=None)).to(model.device)
    new = out.state_dict()  # a reader of another width (an older feature layout) is left to be fit afresh
    readers = ("reader.", "segment_reader.")
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(readers) or (k in new and new[k].shape == v.shape)}  # fmt: skip
    loaded = out.load_state_dict(state, strict=False)
    if loaded.unexpected_keys or any(not k.startswith(readers) for k in loaded.missing_keys):
        raise RuntimeError(f"The model's weights do not fit {config}: {loaded}")
    return out.eval()


def main(argv: list[str] | None = None) -> None:
    import json
    from dataclasses import replace

    from longvmnet.config import ModelConfig
    from longvmnet.hub import CheckpointError, load_model

    p = argparse.ArgumentParser(prog="python -m longvmnet.train.reader", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="the decoder phase's checkpoint folder")
    p.add_argument("--data", required=True, help="the benchmark whose train split the reader is fit on")
    p.add_argument("--cache", default=None, help="feature cache folder (default: DATA/cache)")
    p.add_argument(
        "--out", default=None, help="where the checkpoint with the fit reader goes (default: in place)"
    )
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        trained = load_model(args.checkpoint)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    saved = json.loads((Path(args.checkpoint) / "config.json").read_text())  # as trained, not as loaded
    config = replace(ModelConfig(**saved), window_reader=True)
    torch.manual_seed(args.seed)
    model = with_reader(trained, config)
    data = ReSTData(args.data)
    cache = FeatureCache(args.cache or Path(args.data) / "cache", model)
    losses = fit_reader(model, reader_inputs(model, cache, data, data.split("train")), steps=args.steps,
                        seed=args.seed)  # fmt: skip
    print(f"reader loss: {losses[0]:.3f} -> {np.mean(losses[-3:]):.3f}")
    model.save_pretrained(args.out or args.checkpoint, config=config)


if __name__ == "__main__":
    main()
