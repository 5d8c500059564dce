"""Backbone pretraining on synthetic frames, for machines without Hub access to ImageNet weights.

The generator knows what each patch shows, so the small timm backbone learns patch-level labels (LABELS):
background / hand / the object's category and the photo its texture comes from (the bundled checkpoint's),
optionally also the texture's hue and the activity under way. Optionally, part of the views are windows
around an object resized to the full input, as query crops are. After this the backbone is frozen, as the
paper freezes its ImageNet backbone.

The frames come from the benchmark's training videos and, optionally, from a *pool*: many short videos of
scenes that the benchmark never shows (another generator seed), playing the part that ImageNet plays for
the paper's backbone. `instance_auc` measures, with no training, how well the frozen tokens tell object
instances apart in a split's videos.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from longvmnet.config import SYNTH_ACTIVITIES
from longvmnet.data.benchmark import patch_labels
from longvmnet.data.rest import ReSTData, VideoItem
from longvmnet.data.scene import APPEARANCES, CATEGORIES
from longvmnet.video import iter_frames

TEXTURES = sorted(APPEARANCES)  # texture label = index of the photo an object's texture is cut from
ACTIVITIES = list(SYNTH_ACTIVITIES)
HUE_BINS = 12
LABELS = {
    "category": 2 + len(CATEGORIES),
    "texture": len(TEXTURES),
    "hue": HUE_BINS,
    "activity": 1 + len(ACTIVITIES),
}


def _texture(appearance: str) -> str:
    return appearance.split("+")[0]


def _hue_bin(appearance: str) -> int:
    """The hue shift of an object's texture ("photo+hNNN", degrees) in HUE_BINS bins."""
    return int(appearance.split("+h")[1]) * HUE_BINS // 360


def collect_frames(videos: list[VideoItem], size: int, grid: int, fps: float = 0.25, progress: bool = True,
                   native: bool = False):  # fmt: skip
    """Frames of `videos` with their patch labels. -> frames (n, size, size, 3) uint8, the same frames at
    the video's own size if `native` (else None), and labels (n, 4, grid, grid) int8: category
    (patch_labels), texture (index into TEXTURES) and hue bin of the object's texture (-1 off objects), and
    activity (1 + index into SYNTH_ACTIVITIES on the patches of an object in an activity segment and, while
    only one segment runs, of the hand; 0 elsewhere)."""
    centres = (np.arange(grid) + 0.5) / grid
    xs, ys = np.meshgrid(centres, centres)
    frames, big, cats, texs, hues, acts = [], [], [], [], [], []
    for video in tqdm(videos, desc="frames for pretraining", disable=not progress):
        ann = video.annotations
        fps_ann = ann["fps"]
        if native:
            big += [f for _, f in iter_frames(video.path, fps)]
        for t, frame in iter_frames(video.path, fps, (size, size)):
            idx = min(int(round(t * fps_ann)), len(ann["actor"]["boxes"]) - 1)
            cat = patch_labels(ann, idx, grid)
            tex = np.full((grid, grid), -1, np.int8)
            hue = np.full((grid, grid), -1, np.int8)
            act = np.zeros((grid, grid), np.int8)
            on_object = {}
            for oid, o in ann["objects"].items():
                b = o["boxes"][idx]
                if b is None:
                    continue
                own = cat == 2 + CATEGORIES.index(o["category"])
                on_object[oid] = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3]) & own
                tex[on_object[oid]] = TEXTURES.index(_texture(o["appearance"]))
                hue[on_object[oid]] = _hue_bin(o["appearance"])
            running = [s for s in ann["segments"] if s["start"] <= t < s["end"]]
            for seg in running:
                label = 1 + ACTIVITIES.index(seg["activity"])
                if seg["object"] in on_object:
                    act[on_object[seg["object"]]] = label
                if len(running) == 1:
                    act[cat == 1] = label
            frames.append(frame)
            cats.append(cat.astype(np.int8))
            texs.append(tex)
            hues.append(hue)
            acts.append(act)
    labels = np.stack([np.stack(x) for x in (cats, texs, hues, acts)], 1)
    return np.stack(frames), np.stack(big) if native else None, labels


def _read(maps: list[np.ndarray], x0: float, y0: float, side: float, grid: int) -> list[np.ndarray]:
    """Labels of the grid x grid patch centres of the square view (x0, y0, side) (frame fractions), read from
    the nearest cell of finer (fine, fine) label maps."""
    fine = maps[0].shape[-1]
    centres = (np.arange(grid) + 0.5) / grid
    rows = np.minimum(((y0 + side * centres) * fine).astype(int), fine - 1)
    cols = np.minimum(((x0 + side * centres) * fine).astype(int), fine - 1)
    return [m[rows[:, None], cols[None, :]] for m in maps]


def _zoom_view(frame: np.ndarray, maps: list[np.ndarray], size: int, grid: int, rng: random.Random):
    """A square window around a random object of a native-size frame, resized to `size` as a query crop is
    (crop_tokens), and its patch labels. A window covers 20% to 60% of the frame side (a crop about 30%)."""
    fine = maps[0].shape[0]
    side = rng.uniform(0.2, 0.6)
    ys, xs = np.nonzero(maps[0] >= 2)
    if len(ys):
        k = rng.randrange(len(ys))
        cx, cy = (xs[k] + 0.5) / fine, (ys[k] + 0.5) / fine
    else:
        cx, cy = rng.random(), rng.random()
    x0 = min(max(cx + side * rng.uniform(-0.7, -0.3), 0.0), 1.0 - side)
    y0 = min(max(cy + side * rng.uniform(-0.7, -0.3), 0.0), 1.0 - side)
    h, w = frame.shape[:2]
    window = frame[int(y0 * h) : int((y0 + side) * h), int(x0 * w) : int((x0 + side) * w)]
    image = np.asarray(Image.fromarray(window).resize((size, size), Image.BILINEAR))
    return image, _read(maps, x0, y0, side, grid)


def pretrain_backbone(model, data: ReSTData, *, pool: ReSTData | None = None, pool_fps: float = 1.0,
                      zoom: float = 0.0, labels: tuple[str, ...] = ("category", "texture"), steps: int = 600,
                      batch: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> list[float]:  # fmt: skip
    """Train model.backbone in place on patch `labels` (of LABELS) of `data`'s training frames (0.25 fps)
    and all of `pool`'s frames (`pool_fps`), then freeze it again. -> loss per step

    A `zoom` share of the views are windows around an object, resized to the full input size: query crops
    reach the backbone so, and a backbone that saw whole frames only gives them tokens unlike the object's
    tokens in a frame. The defaults are the bundled checkpoint's pretraining."""
    c = model.config
    unknown = set(labels) - set(LABELS)
    if unknown:
        raise ValueError(f"Unknown pretraining labels {sorted(unknown)}; use some of {', '.join(LABELS)}.")
    kinds = [list(LABELS).index(k) for k in labels]
    fine = 9 * c.grid if zoom > 0 else c.grid  # zoom views read finer maps: 9 x 9 cells per patch
    parts = [collect_frames(data.split("train"), c.image_size, fine, progress=progress, native=zoom > 0)]
    if pool is not None:
        parts.append(collect_frames(pool.split("all"), c.image_size, fine, pool_fps, progress=progress,
                                    native=zoom > 0))  # fmt: skip
    frames = np.concatenate([p[0] for p in parts])
    big = np.concatenate([p[1] for p in parts]) if zoom > 0 else None
    maps = np.concatenate([p[2] for p in parts])[:, kinds]  # (n, kinds, fine, fine)
    sizes = [LABELS[k] for k in labels]
    head = nn.Linear(c.backbone_dim, sum(sizes))
    net = model.backbone
    params = list(net.net.parameters()) + list(head.parameters())
    for p in net.net.parameters():
        p.requires_grad_(True)
    net.net.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    losses = []

    def balanced(y: np.ndarray, n: int) -> torch.Tensor:  # rare classes up: inverse sqrt frequency
        freq = np.bincount(y[y >= 0].ravel(), minlength=n) + 1
        return torch.tensor((freq.sum() / freq) ** 0.5, dtype=torch.float32)

    weights = [balanced(maps[:, j], sizes[j]) if k in ("category", "activity") else None
               for j, k in enumerate(labels)]  # fmt: skip
    for _ in tqdm(range(steps), desc="pretraining backbone", disable=not progress):
        images, views = [], []
        for i in (rng.randrange(len(frames)) for _ in range(batch)):
            if big is not None and rng.random() < zoom:
                image, lab = _zoom_view(big[i], list(maps[i]), c.image_size, c.grid, rng)
            else:
                image, lab = frames[i], _read(list(maps[i]), 0.0, 0.0, 1.0, c.grid)
            images.append(image)
            views.append(lab)
        x = torch.from_numpy(np.stack(images))
        ys = [torch.from_numpy(np.stack(y).astype(np.int64)) for y in zip(*views)]
        if rng.random() < 0.5:  # horizontal flip (labels flip with the image)
            x, ys = x.flip(2), [y.flip(2) for y in ys]
        x = net.preprocess(x)
        x = x * (0.8 + 0.4 * torch.rand(batch, 1, 1, 1))  # photometric jitter
        logits = head(net.features(x)).split(sizes, dim=-1)  # (b, p, n) per label kind
        loss = 0.0
        for lg, y, w, n in zip(logits, ys, weights, sizes):  # -1: no label (texture and hue off objects)
            if (y >= 0).any():
                loss = loss + F.cross_entropy(lg.reshape(-1, n), y.reshape(-1), weight=w, ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.freeze()
    model._fingerprint = None
    return losses


def rank_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (the Mann-Whitney statistic)."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@torch.inference_mode()
def instance_auc(model, data: ReSTData, split: str, *, fps: float = 0.1, progress: bool = True) -> float:
    """How well the frozen backbone's tokens tell object instances apart, with no training: for each object
    crop of the split's videos, the cosine similarity between the mean of the crop's middle tokens
    (`LongVMNet.crop_centre`) and each frame token inside an object's box ranks the crop's own object above
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
            query = F.normalize(model.crop_centre(raw)[0, 0], dim=-1)
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
