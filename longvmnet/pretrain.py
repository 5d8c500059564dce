"""Backbone pretraining on the benchmark's frames, for machines without Hub access to ImageNet weights.

The generator knows what each patch shows, so the small timm backbone learns patch-level labels: background,
hand, the object's category, and the photo its texture comes from (so crops tell instances apart). After
this the backbone is frozen, as the paper freezes its ImageNet backbone.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from longvmnet.data.benchmark import patch_labels
from longvmnet.data.rest import ReSTData
from longvmnet.video import iter_frames


def _texture(appearance: str) -> str:
    return appearance.split("+")[0]


def collect_frames(data: ReSTData, size: int, grid: int, fps: float = 0.25, progress: bool = True):
    """Frames of the training videos with their patch labels. -> frames (n, s, s, 3) uint8,
    category labels (n, grid, grid), texture labels (n, grid, grid) (-1 where no object), texture names."""
    textures = sorted(
        {_texture(o["appearance"]) for v in data.split("train") for o in v.annotations["objects"].values()}
    )
    frames, cats, texs = [], [], []
    for video in tqdm(data.split("train"), desc="frames for pretraining", disable=not progress):
        ann = video.annotations
        fps_ann = ann["fps"]
        for t, frame in iter_frames(video.path, fps, (size, size)):
            idx = min(int(round(t * fps_ann)), len(ann["actor"]["boxes"]) - 1)
            cat = patch_labels(ann, idx, grid)
            tex = np.full((grid, grid), -1, np.int64)
            for o in ann["objects"].values():
                b = o["boxes"][idx]
                if b is None:
                    continue
                centres = (np.arange(grid) + 0.5) / grid
                xs, ys = np.meshgrid(centres, centres)
                inside = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3]) & (cat >= 2)
                tex[inside] = textures.index(_texture(o["appearance"]))
            frames.append(frame)
            cats.append(cat)
            texs.append(tex)
    return np.stack(frames), np.stack(cats), np.stack(texs), textures


def pretrain_backbone(model, data: ReSTData, *, steps: int = 600, batch: int = 64, lr: float = 1e-3,
                      seed: int = 0, progress: bool = True) -> list[float]:  # fmt: skip
    """Train model.backbone in place on patch labels, then freeze it again. -> loss per step"""
    c = model.config
    frames, cats, texs, textures = collect_frames(data, c.image_size, c.grid, progress=progress)
    n_cat = int(cats.max()) + 1
    head = nn.Linear(c.backbone_dim, n_cat + len(textures))
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
    # objects and the hand are rare: weight classes by inverse square-root frequency
    freq = np.bincount(cats.ravel(), minlength=n_cat) + 1
    weight = torch.tensor((freq.sum() / freq) ** 0.5, dtype=torch.float32)
    for _ in tqdm(range(steps), desc="pretraining backbone", disable=not progress):
        idx = [rng.randrange(len(frames)) for _ in range(batch)]
        x = torch.from_numpy(frames[idx])
        y_cat = torch.from_numpy(cats[idx])
        y_tex = torch.from_numpy(texs[idx])
        if rng.random() < 0.5:  # horizontal flip (labels flip with the image)
            x, y_cat, y_tex = x.flip(2), y_cat.flip(2), y_tex.flip(2)
        x = net.preprocess(x)
        x = x * (0.8 + 0.4 * torch.rand(batch, 1, 1, 1))  # photometric jitter
        logits = head(net.features(x))  # (b, p, n_cat + n_tex)
        loss = F.cross_entropy(logits[..., :n_cat].reshape(-1, n_cat), y_cat.reshape(-1), weight=weight)
        tex_mask = y_tex.reshape(-1) >= 0
        if tex_mask.any():
            loss = loss + F.cross_entropy(logits[..., n_cat:].reshape(-1, len(textures))[tex_mask],
                                          y_tex.reshape(-1)[tex_mask])  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.freeze()
    model._fingerprint = None
    return losses
