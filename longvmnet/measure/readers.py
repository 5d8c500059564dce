"""Memory readers: do the tokens a memory keeps name an activity query's activities, and which tokens must
a model pick to read them?

For each activity query, the memory tokens inside its window are weighted three ways: `annotated` (the
tokens that show the crop's object or the hand during its segments in the window: `rest.query_token_targets`,
a ceiling no model is given), `uniform` (every token of the window alike) and `pointer` (the model's own
query-token match, when it has the pointer). Per memory frame, the weighted mean token; over the window's
frames, the summary of `model.reader.time_summary`; with the crop's mean token. A one-hidden-layer
classifier per weighting is fit on training videos' queries and scored by R@1x on other videos, beside the
class frequencies of the training answers (the prior). `longvmnet probe --readers`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tqdm import tqdm

from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem, multi_hot, query_token_targets
from longvmnet.measure.ladder import memory_from_cache
from longvmnet.measure.metrics import recall_at_kx
from longvmnet.model.reader import WindowReader, window_feature

WEIGHTINGS = ("annotated", "uniform", "pointer")


@torch.inference_mode()
def reader_samples(model, cache: FeatureCache, data: ReSTData, videos: list[VideoItem], progress: bool = True,
                   desc: str = "readers") -> dict:  # fmt: skip
    """Every activity query of `videos` (their memories by the model's stage 1 on cached tokens): one feature
    row per weighting, its multi-hot answer and its window name."""
    from longvmnet.inference import crop_tokens, load_crop

    c = model.config
    weightings = [w for w in WEIGHTINGS if w != "pointer" or c.pointer]
    out: dict[str, list] = defaultdict(list)
    for v in tqdm(videos, desc=desc, disable=not progress):
        queries = [q for q in v.queries if q["type"] == "activity"]
        if not queries:
            continue
        memory = {k: t.to(model.device) for k, t in memory_from_cache(model, cache, v).batched().items()}
        tokens, times = memory["tokens"][0].float().cpu(), memory["times"][0].float().cpu()
        pos = (memory["rows"][0] * c.grid + memory["cols"][0]).cpu().numpy()
        # per crop file: its tokens, and the pointer's match (neither reads the window)
        crops: dict[str, torch.Tensor] = {}
        matches: dict[str, torch.Tensor] = {}
        for q in queries:
            if q["crop"] not in crops:
                crops[q["crop"]] = crop_tokens(model, [load_crop(data.path(q["crop"]))])
            obj = crops[q["crop"]]
            inside = ((times >= q["start"]) & (times <= q["end"])).float()
            weights = {"annotated": torch.from_numpy(query_token_targets(v.annotations, q, times.numpy(), pos, c.grid)).float(),
                       "uniform": torch.ones(len(times))}  # fmt: skip
            if c.pointer:
                if q["crop"] not in matches:
                    enc, m = model.encode(memory, object_tokens=obj), tokens.shape[0]
                    ev = model.localise(enc[:, :m], enc[:, m:], memory, torch.tensor([[q["start"]]]))
                    matches[q["crop"]] = ev["token_logits"][0].sigmoid().float().cpu()
                weights["pointer"] = matches[q["crop"]]
            crop = obj[0].mean(0).float().cpu()
            for name in weightings:
                out[name].append(torch.cat([window_feature(tokens, times, weights[name] * inside), crop]))
            out["y"].append(multi_hot(q["answer"]["activities"], c.activities))
            out["window"].append(q["window"])
    return out


def _fit(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> WindowReader:
    """A multi-label one-hidden-layer classifier on standardised features: the window reader's (`WindowReader`,
    its width x's), fit alone."""
    torch.manual_seed(seed)
    reader = WindowReader(0, y.shape[1], width=x.shape[1])
    reader.fit(x, y, steps=steps, seed=seed)
    return reader


def recall_by_window(scores: torch.Tensor, y: torch.Tensor, windows: list[str]) -> dict[str, float]:
    """Mean R@1x in percent per window name. scores, y (n, c)"""
    hits = defaultdict(list)
    for s, t, w in zip(scores.tolist(), y, windows):
        hits[w].append(recall_at_kx(s, torch.nonzero(t).flatten().tolist()))
    return {w: round(100 * float(np.mean(h)), 1) for w, h in hits.items()}


def probe_readers(model, cache: FeatureCache, train: list[tuple[ReSTData, list[VideoItem]]],
                  scored: tuple[ReSTData, list[VideoItem]], *, steps: int = 1500, seed: int = 0,
                  progress: bool = True) -> dict:  # fmt: skip
    """-> {"activity_r1x": {weighting or "prior": {window: R@1x}}, "queries": {"train", "scored"}}"""
    model.eval()
    tr: dict[str, list] = defaultdict(list)
    for data, videos in train:
        for key, rows in reader_samples(
            model, cache, data, videos, progress, "readers: training videos"
        ).items():
            tr[key] += rows
    ev = reader_samples(model, cache, *scored, progress, "readers: scored videos")
    if not tr["y"] or not ev["y"]:
        raise ValueError(
            "The reader probe needs activity queries on both the training and the scored videos."
        )
    y_tr, y_ev = torch.stack(tr["y"]), torch.stack(ev["y"])
    result = {}
    for name in (w for w in WEIGHTINGS if w in ev):
        reader = _fit(torch.stack(tr[name]), y_tr, steps, seed)
        with torch.no_grad():
            result[name] = recall_by_window(reader(torch.stack(ev[name])), y_ev, ev["window"])
    result["prior"] = recall_by_window(y_tr.mean(0).expand(len(y_ev), -1), y_ev, ev["window"])
    return {"activity_r1x": result, "queries": {"train": len(y_tr), "scored": len(y_ev)}}
