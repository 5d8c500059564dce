"""Shared fixtures. Video: `make_clip` writes real short clips whose colour encodes the frame index."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest


class ClipMaker:
    """make_clip(name, seconds=4, fps=10, size=(64, 48), codec="libx264", keyframe_interval=None, keys=None).

    Frame i is a flat colour: R = 16 * (i % 16) + 8, G = 16 * (i // 16) + 8, so `index_of(frame)`
    recovers i after lossy coding. The container follows the file suffix (.mp4, .mkv, .webm).
    `keyframe_interval` gives regular keyframes; `keys` (frame indices) forces keyframes there only.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(
        self,
        name: str = "clip.mp4",
        *,
        seconds: float = 4.0,
        fps: int = 10,
        size: tuple[int, int] = (64, 48),
        codec: str = "libx264",
        keyframe_interval: int | None = None,
        keys: list[int] | None = None,
    ) -> Path:
        path = self.folder / name
        width, height = size
        options = {"crf": "12"} if codec == "libx264" else {}
        if keyframe_interval or keys:
            gop = keyframe_interval or 10_000
            options |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = options
            for i in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(self.image(i, size), format="rgb24")
                if keys is not None and i in keys:
                    frame.pict_type = av.video.frame.PictureType.I
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return path

    @staticmethod
    def image(i: int, size: tuple[int, int]) -> np.ndarray:
        width, height = size
        return np.full((height, width, 3), (16 * (i % 16) + 8, 16 * (i // 16) + 8, 128), np.uint8)

    @staticmethod
    def index_of(frame: np.ndarray) -> int:
        r, g = frame[..., 0].mean(), frame[..., 1].mean()
        return round((r - 8) / 16) + 16 * round((g - 8) / 16)


@pytest.fixture
def make_clip(tmp_path: Path) -> ClipMaker:
    return ClipMaker(tmp_path)


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    """A real generated benchmark: 3 one-minute videos (H.264 mp4, annotations, crops, queries)."""
    from longvmnet.data.synth import generate

    root = tmp_path_factory.mktemp("bench") / "tiny"
    generate(root, videos=3, minutes=1.0, seed=3, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_benchmark) -> Path:
    """A randomly initialised `tiny` checkpoint saved with save_pretrained."""
    import json

    import torch

    from longvmnet.config import preset
    from longvmnet.model import LongVMNet

    torch.manual_seed(0)
    activities = json.loads((tiny_benchmark / "benchmark.json").read_text())["activities"]
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    LongVMNet(preset("tiny", activities=activities)).save_pretrained(folder)
    return folder
