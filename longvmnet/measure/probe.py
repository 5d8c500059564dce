"""Token probes: what the tokens a memory holds tell, with no query model in the way.

Small classifiers are fit on a checkpoint's frozen, projected frame tokens (the tokens stage 1 writes to
memory) of training videos, with labels the generator knows, and scored on other videos:
  hand      is a patch on the hand? (rank AUC over all tokens; 0.5 is chance)
  token     which activity is under way on a patch of a segment's object or hand? (accuracy over those
            tokens; chance is 1 / classes)
  segment   which activity is a segment, given the tokens of its object and hand on every scanned frame?
            (accuracy over segments; `segment_feature`) The best a memory could hold: every token that
            shows the activity, picked by the annotation.
  trajectory  the same from where those tokens lie instead of what they show (`segment_trajectory`: the
            patches' mean row and column and their number over time, as a memory's provenance holds them).
  memory    what of that the model's own memory keeps (stage 1 on the cached tokens): the share of its tokens
            that show an activity, the median number per segment, and the trajectory probe on those alone.
The hand tells *when* something happens; the class is what activity and time queries need. With `motion`
k, every token also carries its change from the same patch k scanned frames before and after: the only
motion a single token of a memory could be given.

Backbones are measured the same way before any training: `backbone_model` gives an ImageNet backbone's own
tokens (identity projection) and `compare_backbones` probes each candidate with its frames/s (the model
card's table); `instance_auc` asks whether a crop's tokens find its own object among the others.

Letters: n frames, p tokens per frame, d width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from longvmnet.data.benchmark import patch_labels
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem, patch_activities
from longvmnet.measure.ladder import memory_from_cache
from longvmnet.model.reader import time_summary
from longvmnet.video import iter_frames


def rank_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (the Mann-Whitney statistic)."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def crop_centre(object_tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """The mean of a crop's tokens around the middle of its grid (3 x 3 of 7 x 7): a query crop is cut around
    its object, and its outer tokens show the table and neighbours. (b, grid^2, c) -> (b, 1, c)"""
    half = max(1, grid // 4)
    mid = object_tokens.unflatten(1, (grid, grid))[:, grid // 2 - half : grid // 2 + half + 1,
                                                   grid // 2 - half : grid // 2 + half + 1]  # fmt: skip
    return mid.flatten(1, 2).mean(1, keepdim=True)


@torch.inference_mode()
def instance_auc(model, data: ReSTData, split: str, *, fps: float = 0.1, progress: bool = True) -> float:
    """How well the frozen backbone's tokens tell object instances apart, with no training: for each object
    crop of the split's videos, the cosine similarity between the mean of the crop's middle tokens
    (`crop_centre`) and each frame token inside an object's box ranks the crop's own object above
    the others (rank AUC, averaged over crops; 0.5 is chance). Frames at `fps`."""
    from longvmnet.inference import crop_images, load_crop

    net, c = model.backbone, model.config
    centres = (np.arange(c.grid) + 0.5) / c.grid
    xs, ys = (a.ravel() for a in np.meshgrid(centres, centres))
    aucs = []
    for video in tqdm(data.split(split), desc="instance AUC", unit="video", disable=not progress):
        ann = video.annotations
        shots = list(iter_frames(video.path, fps, (c.image_size, c.image_size)))
        tokens = F.normalize(net(torch.from_numpy(np.stack([f for _, f in shots]))), dim=-1)
        for oid, crops in ann["crops"].items():
            if not crops:
                continue
            raw = net(crop_images(model, [load_crop(data.path(crops[0]["file"]))]))  # before the projection
            query = F.normalize(crop_centre(raw, c.grid)[0, 0], dim=-1)
            pos, neg = [], []
            for (t, _), tok in zip(shots, tokens):
                idx = min(int(round(t * ann["fps"])), len(ann["actor"]["boxes"]) - 1)
                for other, o in ann["objects"].items():
                    b = o["boxes"][idx]
                    if b is None:
                        continue
                    inside = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
                    if inside.any():  # the box covers a patch centre
                        (pos if other == oid else neg).append((tok[torch.from_numpy(inside)] @ query).numpy())
            if pos and neg:  # the object was seen at the sampled times
                aucs.append(rank_auc(np.concatenate(pos), np.concatenate(neg)))
    return float(np.mean(aucs)) if aucs else float("nan")


def backbone_model(backbone: str, block: int, image_size: int, activities: list[str]):
    """An untrained model whose memory tokens are the ImageNet backbone's own (the projection is the
    identity), to probe a backbone before any training: timm `backbone` with its package weights, feature
    block `block` (4: stride 32; 3: stride 16), frames of `image_size` pixels."""
    import timm

    from longvmnet.config import preset
    from longvmnet.model import LongVMNet

    info = timm.create_model(backbone, features_only=True, out_indices=[block]).feature_info
    dim, stride = info.channels()[-1], info.reduction()[-1]
    config = preset("lite", backbone=backbone, backbone_kwargs={"features_only": True, "out_indices": [block]},
                    image_size=image_size, grid=image_size // stride, backbone_dim=dim, d_model=dim,
                    activities=list(activities))  # fmt: skip
    model = LongVMNet(config)
    with torch.no_grad():
        model.proj[1].weight.copy_(torch.eye(dim))
        model.proj[1].bias.zero_()
    return model.eval()


class ProbeError(ValueError):
    """Videos a probe cannot be fit on; str() is one sentence for the user."""


@torch.inference_mode()
def token_features(model, cache: FeatureCache, video: VideoItem, motion: int = 0):
    """-> times (n,), features (n, p, d or 3d): the projected tokens [, minus the same patch `motion` frames
    before, and the same patch `motion` frames after minus them] (the first and last frames repeat)."""
    feats = cache.video(video.path)
    x = model.project(torch.from_numpy(np.array(feats.tokens))).cpu()
    if motion:
        n = torch.arange(len(x))
        before, after = x[(n - motion).clamp(min=0)], x[(n + motion).clamp(max=len(x) - 1)]
        x = torch.cat([x, x - before, after - x], -1)
    return feats.times, x


def patch_hands(annotation: dict, times: np.ndarray, grid: int) -> np.ndarray:
    """(n, grid * grid) bool: the patch centre lies on the hand at each time."""
    fps, last = annotation["fps"], len(annotation["actor"]["boxes"]) - 1
    return np.stack(
        [patch_labels(annotation, min(int(round(t * fps)), last), grid).reshape(-1) == 1 for t in times]
    )


def segment_feature(x: torch.Tensor, on: np.ndarray) -> torch.Tensor:
    """What the tokens of one activity segment look like: x (n, p, d) of its n scanned frames, on (n, p) its
    object's and hand's patches; per frame the mean of those tokens, summarised over time. -> (5 d,)"""
    on_t = torch.from_numpy(on).to(x.dtype)
    return time_summary((x * on_t[..., None]).sum(1) / on_t.sum(1, keepdim=True).clamp(min=1))


def segment_trajectory(on: np.ndarray, grid: int) -> torch.Tensor:
    """Where the tokens of one activity segment lie: on (n, p) as in `segment_feature`; per frame the mean
    column and row of those patches (frame fractions, less their mean over the segment) and their number / p,
    summarised over time, plus the share of frames with any such patch. What a memory's provenance (time,
    row, column) holds. -> (16,)"""
    cols = torch.arange(grid).repeat(grid).float()
    rows = torch.arange(grid).repeat_interleave(grid).float()
    on_t = torch.from_numpy(on).float()
    count = on_t.sum(1)
    seen = count > 0
    n = count.clamp(min=1)
    path = torch.stack(
        [(on_t * cols).sum(1) / n / grid, (on_t * rows).sum(1) / n / grid, count / on.shape[1]], 1
    )
    if seen.any():  # frames without such patches sit at the segment's mean place
        path[~seen] = path[seen].mean(0)
    path[:, :2] -= path[:, :2].mean(0)  # how the patches move, not where in this scene they are
    return torch.cat([time_summary(path), seen.float().mean()[None]])


@dataclass
class Samples:
    """What `_samples` collects, as lists of tensors (concatenated by `tensors`)."""

    # tokens (d or 3d,) and whether they lie on the hand; tokens of an activity's object or hand, and its class
    hand_x: list = field(default_factory=list)
    hand_y: list = field(default_factory=list)
    token_x: list = field(default_factory=list)
    token_y: list = field(default_factory=list)
    # per segment: `segment_feature`, `segment_trajectory` and its class
    segment_x: list = field(default_factory=list)
    trajectory_x: list = field(default_factory=list)
    segment_y: list = field(default_factory=list)
    # per segment: the trajectory through the acting tokens that the memory keeps, what those tokens look like
    # (`segment_feature` over them alone), its class (-1 where fewer than 2 frames keep one) and how many such
    # tokens it keeps; per video: the memory's share of them
    memory_x: list = field(default_factory=list)
    memory_feature_x: list = field(default_factory=list)
    memory_y: list = field(default_factory=list)
    memory_tokens: list = field(default_factory=list)
    memory_share: list = field(default_factory=list)

    def tensors(self, token_width: int, segment_width: int) -> dict[str, torch.Tensor]:
        """The lists concatenated (empty ones as 0-row tensors)."""
        widths = {"hand_x": token_width, "token_x": token_width, "segment_x": segment_width,
                  "trajectory_x": 16, "memory_x": 16, "memory_feature_x": segment_width}  # fmt: skip
        out = {}
        for name, parts in vars(self).items():
            empty = torch.zeros(0, widths[name]) if name in widths else torch.zeros(0, dtype=torch.long)
            out[name] = torch.cat(parts) if parts else empty
        return out


def kept_tokens(model, cache: FeatureCache, video: VideoItem, times: np.ndarray) -> np.ndarray:
    """Which scanned tokens the model's stage 1 keeps in the video's memory. -> (n, p) bool"""
    memory = memory_from_cache(model, cache, video)
    kept = np.zeros((len(times), model.config.tokens_per_frame), bool)
    frames = np.searchsorted(times, memory.times.numpy() - 1e-4)
    kept[frames, (memory.rows * model.config.grid + memory.cols).numpy()] = True
    return kept


def _samples(model, cache, videos, motion, rng, negatives: float, progress: bool, desc: str, memory=False):
    """Every hand token and a `negatives` share of the others; every token of an activity's object or hand;
    every activity segment with at least 2 scanned frames; with `memory`, what the model's memory keeps of
    them. -> Samples.tensors"""
    c = model.config
    out = Samples()
    for v in tqdm(videos, desc=desc, disable=not progress):
        times, x = token_features(model, cache, v, motion)
        hand = patch_hands(v.annotations, times, c.grid)
        act = patch_activities(v.annotations, times, c.grid, c.activities)
        keep = hand | (rng.random(hand.shape) < negatives)
        out.hand_x.append(x[torch.from_numpy(keep)])
        out.hand_y.append(torch.from_numpy(hand[keep]).long())
        out.token_x.append(x[torch.from_numpy(act > 0)])
        out.token_y.append(torch.from_numpy(act[act > 0] - 1))
        if memory:
            kept = kept_tokens(model, cache, v, times)
            out.memory_share.append(torch.tensor([float((act[kept] > 0).mean()) if kept.any() else 0.0]))
        for seg in v.annotations["segments"]:
            frames = np.flatnonzero((times >= seg["start"]) & (times <= seg["end"]))
            label = 1 + c.activities.index(seg["activity"])
            if len(frames) < 2:
                continue
            on = act[frames] == label
            out.segment_x.append(segment_feature(x[frames, :, : c.d_model], on)[None])
            out.trajectory_x.append(segment_trajectory(on, c.grid)[None])
            out.segment_y.append(torch.tensor([label - 1]))
            if memory:
                in_memory = on & kept[frames]
                out.memory_tokens.append(torch.tensor([float(in_memory.sum())]))
                seen = in_memory.any(1)
                in_memory = in_memory[seen]
                traced = len(in_memory) >= 2
                out.memory_x.append(
                    (segment_trajectory(in_memory, c.grid) if traced else torch.zeros(16))[None]
                )
                out.memory_feature_x.append(
                    (segment_feature(x[frames[seen], :, : c.d_model], in_memory) if traced
                     else torch.zeros(5 * c.d_model))[None]
                )  # fmt: skip
                out.memory_y.append(torch.tensor([label - 1 if traced else -1]))
    return out.tensors(c.d_model * (3 if motion else 1), 5 * c.d_model)


def _fit(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int, seed: int, *, balanced: bool = False,
         batch: int = 512, lr: float = 3e-3, dropout: float = 0.0) -> nn.Module:  # fmt: skip
    """A one-hidden-layer classifier by AdamW on random batches (half positives if `balanced`)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 128), nn.GELU(), nn.Dropout(dropout), nn.Linear(128, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    pos, neg = torch.nonzero(y > 0).squeeze(1), torch.nonzero(y == 0).squeeze(1)
    for _ in range(steps):
        if balanced and len(pos) and len(neg):
            idx = torch.cat(
                [pos[torch.randint(len(pos), (batch // 2,))], neg[torch.randint(len(neg), (batch // 2,))]]
            )
        else:
            idx = torch.randint(len(y), (batch,))
        loss = F.cross_entropy(net(x[idx]), y[idx].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def probe_tokens(model, cache: FeatureCache, train: list[VideoItem], evaluate: list[VideoItem], *,
                 motion: int = 0, steps: int = 1500, seed: int = 0, progress: bool = True) -> dict:  # fmt: skip
    """Fit the probes on `train` videos and score them on `evaluate` videos.
    -> {"hand_auc", "token_activity_accuracy", "segment_activity_accuracy", "trajectory_activity_accuracy",
        "memory_activity_share", "memory_tokens_per_segment", "memory_trajectory_activity_accuracy",
        "memory_segment_activity_accuracy", "activity_chance", "majority_class_accuracy", "motion",
        "samples": {...}}"""
    if not evaluate:
        raise ProbeError("The split to score has no videos; choose another split.")
    model.eval()
    n_cls = len(model.config.activities)
    rng = np.random.default_rng(seed)
    tr = _samples(model, cache, train, motion, rng, 0.1, progress, "probe: training videos", memory=True)
    if not tr["hand_y"].any() or not len(tr["segment_y"]):
        raise ProbeError(
            "The training videos show no hand or no activity to fit the probes on; add videos with --pool."
        )
    ev = _samples(model, cache, evaluate, motion, rng, 1.0, progress, "probe: scored videos", memory=True)
    hand = _fit(tr["hand_x"], tr["hand_y"], 2, steps, seed, balanced=True)
    token = _fit(tr["token_x"], tr["token_y"], n_cls, steps, seed)

    def standard(name: str):  # features scaled by the training set's mean and std
        mu, sd = tr[f"{name}_x"].mean(0), tr[f"{name}_x"].std(0, correction=0)
        sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))  # a feature that never varies stays as it is
        return lambda x: (x - mu) / sd

    scale = {name: standard(name) for name in ("segment", "trajectory", "memory_feature")}
    few = {"batch": 128, "lr": 1e-3, "dropout": 0.2}  # segments number hundreds, not hundreds of thousands
    segment = _fit(scale["segment"](tr["segment_x"]), tr["segment_y"], n_cls, steps, seed, **few)
    traced = tr["memory_y"] >= 0  # the memory's own segment probe: fit on what training memories keep
    in_memory = _fit(scale["memory_feature"](tr["memory_feature_x"][traced]), tr["memory_y"][traced], n_cls,
                     steps, seed, **few) if traced.any() else segment  # fmt: skip
    trajectory = _fit(scale["trajectory"](tr["trajectory_x"]), tr["segment_y"], n_cls, steps, seed, **few)

    def accuracy(net, x, y) -> float:
        return round((net(x).argmax(-1) == y).float().mean().item(), 4) if len(y) else float("nan")

    def per_class(net, x, y) -> dict[str, float]:  # accuracy over the tokens of each true class
        hit = net(x).argmax(-1) == y
        names = model.config.activities
        return {names[c]: round(hit[y == c].float().mean().item(), 4) for c in y.unique().tolist()}

    with torch.inference_mode():
        score = hand(ev["hand_x"]).log_softmax(-1)[:, 1].numpy()
        on_hand = ev["hand_y"].bool().numpy()
        majority = torch.bincount(tr["segment_y"], minlength=n_cls).argmax()
        return {
            "hand_auc": round(rank_auc(score[on_hand], score[~on_hand]), 4),
            "token_activity_accuracy": accuracy(token, ev["token_x"], ev["token_y"]),
            "token_activity_accuracy_per_class": per_class(token, ev["token_x"], ev["token_y"]),
            "segment_activity_accuracy": accuracy(segment, scale["segment"](ev["segment_x"]), ev["segment_y"]),
            "trajectory_activity_accuracy": accuracy(
                trajectory, scale["trajectory"](ev["trajectory_x"]), ev["segment_y"]
            ),
            "memory_activity_share": round(ev["memory_share"].mean().item(), 4),
            "memory_tokens_per_segment": ev["memory_tokens"].median().item() if len(ev["memory_tokens"]) else 0,
            "memory_trajectory_activity_accuracy": accuracy(  # segments the memory cannot trace count as misses
                trajectory, scale["trajectory"](ev["memory_x"]), ev["memory_y"]
            ),
            # a segment probe fit and scored on the acting tokens that memories keep: is the class in the memory?
            "memory_segment_activity_accuracy": accuracy(
                in_memory, scale["memory_feature"](ev["memory_feature_x"]), ev["memory_y"]
            ),
            "activity_chance": round(1 / n_cls, 4),
            "majority_class_accuracy": round((ev["segment_y"] == majority).float().mean().item(), 4)
            if len(ev["segment_y"]) else float("nan"),
            "motion": motion,
            "samples": {key: {"train": len(tr[f"{key}_y"]), "scored": len(ev[f"{key}_y"])}
                        for key in ("hand", "token", "segment")}
            | {"train_hand_tokens": int(tr["hand_y"].sum()), "scored_hand_tokens": int(on_hand.sum())},
        }  # fmt: skip


# timm backbone, feature block, frame side: the candidates for the default preset's tokens (7 x 7 each)
BACKBONE_CANDIDATES = [
    ("tf_efficientnet_lite0", 4, 224),
    ("tf_efficientnet_lite0", 3, 112),
    ("tf_efficientnet_lite1", 4, 224),
    ("tf_efficientnet_lite2", 4, 224),
]


@torch.inference_mode()
def frames_per_second(model, batch: int = 16, repeats: int = 4) -> float:
    """The backbone's throughput on this machine (random frames, after one warm-up batch)."""
    import time

    size = model.config.image_size
    frames = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    model.embed_frames(frames)
    start = time.perf_counter()
    for _ in range(repeats):
        model.embed_frames(frames)
    return round(batch * repeats / (time.perf_counter() - start), 1)


def compare_backbones(cache_root, train: list[VideoItem], scored: list[VideoItem], activities: list[str], *,
                      candidates=BACKBONE_CANDIDATES, steps: int = 1500, progress: bool = True) -> list[dict]:  # fmt: skip
    """The token probes and frames/s of each candidate ImageNet backbone whose weight package is installed
    (its own tokens, no training). -> one row per candidate: backbone, block, image_size, tokens, channels,
    frames_per_s, the probe figures (or `missing`: the package to install)."""
    from longvmnet.model.backbone import PACKAGE_WEIGHTS, BackboneError

    rows = []
    for name, block, size in candidates:
        row = {"backbone": name, "block": block, "image_size": size}
        try:
            model = backbone_model(name, block, size, activities)
        except BackboneError:
            rows.append(row | {"missing": PACKAGE_WEIGHTS[name][0]})
            continue
        c = model.config
        row |= {
            "tokens": f"{c.grid}x{c.grid}",
            "channels": c.backbone_dim,
            "frames_per_s": frames_per_second(model),
        }
        result = probe_tokens(
            model, FeatureCache(cache_root, model), train, scored, steps=steps, progress=progress
        )
        rows.append(row | {k: result[k] for k in ("hand_auc", "token_activity_accuracy",
                                                  "token_activity_accuracy_per_class", "segment_activity_accuracy",
                                                  "activity_chance")})  # fmt: skip
    return rows
