"""Feature cache: the backbone is frozen, so each video's frame tokens are computed once per backbone and fps
and stored on disk (memory-mapped .npy), keyed by the backbone and the video's fingerprint.

Letters: n frames, p tokens per frame, c backbone channels.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from longvmnet.video import iter_clips, probe


@dataclass
class VideoFeatures:
    times: np.ndarray  # (n,) float32 seconds of each scanned frame
    tokens: np.ndarray  # (n, p, c) float16, memory-mapped


def backbone_key(model) -> str:
    """Identifies what the cached tokens depend on: backbone config, its weights, input size and fps."""
    c = model.config
    h = hashlib.sha256(
        json.dumps([c.backbone, c.backbone_kwargs, c.image_size, c.memory_fps], sort_keys=True).encode()
    )
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class FeatureCache:
    def __init__(self, root: str | os.PathLike, model, *, batch: int = 64):
        self.model = model
        self.dir = Path(root) / backbone_key(model)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batch = batch
        self.hits = 0
        self.misses = 0

    @torch.inference_mode()
    def video(self, path: str | os.PathLike, *, progress: bool = False) -> VideoFeatures:
        """Frame tokens of a video at the model's memory fps (the frames stage 1 scans)."""
        info = probe(path)
        tok_path = self.dir / f"{info.fingerprint}.tokens.npy"
        time_path = self.dir / f"{info.fingerprint}.times.npy"
        if tok_path.is_file() and time_path.is_file():
            self.hits += 1
            return VideoFeatures(np.load(time_path), np.load(tok_path, mmap_mode="r"))
        self.misses += 1
        c = self.model.config
        times, chunks = [], []
        total = int(np.ceil(info.duration_s * c.memory_fps))
        bar = tqdm(
            total=total, unit="frame", desc=f"features {Path(path).name}", disable=not progress, leave=False
        )
        for clip in iter_clips(path, c.memory_fps, self.batch, (c.image_size, c.image_size)):
            chunks.append(self.model.backbone(torch.from_numpy(clip.frames)).half().numpy())
            times.append(clip.times.astype(np.float32))
            bar.update(len(clip.times))
        bar.close()
        _atomic_save(tok_path, np.concatenate(chunks))
        _atomic_save(time_path, np.concatenate(times))
        return VideoFeatures(np.load(time_path), np.load(tok_path, mmap_mode="r"))

    @torch.inference_mode()
    def crop(self, path: str | os.PathLike) -> np.ndarray:
        """Backbone tokens of an object crop image. -> (p, c) float16"""
        data = Path(path).read_bytes()
        out = self.dir / "crops" / f"{hashlib.sha1(data).hexdigest()[:16]}.npy"
        if out.is_file():
            self.hits += 1
            return np.load(out)
        self.misses += 1
        s = self.model.config.image_size
        with Image.open(path, formats=["PNG", "JPEG"]) as im:
            arr = np.array(im.convert("RGB").resize((s, s), Image.BILINEAR))
        tokens = self.model.backbone(torch.from_numpy(arr)[None])[0].half().numpy()
        out.parent.mkdir(exist_ok=True)
        _atomic_save(out, tokens)
        return tokens
