"""The memory: an explicit value of m tokens plus where each came from. Never hidden module state.

Letters: m memory size, d model width.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "longvmnet-memory/1"
MAX_DURATION_S = 7 * 24 * 3600.0  # a week: longer is no video this project scans
MAX_TOKEN = 1e4  # projected tokens are layer-normed then linear: |values| of a few units, never this
MAX_TOKENS = 1 << 16  # tokens in one memory file
# metadata field -> (type, smallest, largest); text fields: (str, 0, longest)
META_FIELDS = {
    "video": (str, 0, 255),
    "fingerprint": (str, 0, 128),
    "fps": (float, 1e-3, 1000.0),
    "duration_s": (float, 0.0, MAX_DURATION_S),
    "frames_seen": (int, 0, int(MAX_DURATION_S * 1000)),
    "checkpoint": (str, 0, 128),
    "build_s": (float, 0.0, 1e7),
    "skipped_packets": (int, 0, 1 << 40),
}


class MemoryFileError(ValueError):
    pass


def parse_meta(raw: str, name: str) -> MemoryMeta:
    """The metadata JSON of a memory file, every field checked for type and range. -> MemoryMeta"""
    try:
        fields = json.loads(raw)
    except (TypeError, ValueError) as e:
        raise MemoryFileError(f"{name} has unreadable metadata; build the memory again.") from e
    if not isinstance(fields, dict):
        raise MemoryFileError(f"{name} has unreadable metadata; build the memory again.")
    if unknown := sorted(set(fields) - set(META_FIELDS)):
        raise MemoryFileError(
            f"{name} has unknown metadata ({', '.join(map(str, unknown))[:80]}); build it again."
        )
    for key, value in fields.items():
        kind, lo, hi = META_FIELDS[key]
        if kind is str:
            ok = isinstance(value, str) and len(value) <= hi and value.isprintable()
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
        if not ok:
            shown = repr(value)[:40]
            raise MemoryFileError(
                f"{name} has an invalid {key} ({shown}): expected "
                + (
                    f"text of at most {hi} printable characters"
                    if kind is str
                    else f"a number from {lo:g} to {hi:g}"
                )
                + "; build the memory again."
            )
    return MemoryMeta(**{k: (float(v) if META_FIELDS[k][0] is float else v) for k, v in fields.items()})


@dataclass(frozen=True)
class MemoryMeta:
    video: str = ""  # file name the memory was built from
    fingerprint: str = ""  # the video's content fingerprint
    fps: float = 1.0  # frames per second scanned
    duration_s: float = 0.0
    frames_seen: int = 0
    checkpoint: str = ""  # fingerprint of the checkpoint that wrote it (tokens are only valid for it)
    build_s: float = 0.0  # wall time of stage 1
    skipped_packets: int = 0  # corrupt packets skipped while decoding


@dataclass(frozen=True)
class Memory:
    tokens: torch.Tensor  # (m, d) float32: projected backbone tokens, no positional encoding
    times: torch.Tensor  # (m,) float32: seconds into the video of each token's frame
    rows: torch.Tensor  # (m,) int64: patch row in the frame's token grid
    cols: torch.Tensor  # (m,) int64: patch column
    meta: MemoryMeta = field(default_factory=MemoryMeta)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    def with_meta(self, **changes) -> Memory:
        return replace(self, meta=replace(self.meta, **changes))

    def batched(self) -> dict[str, torch.Tensor]:
        """The tensors with a leading batch axis of 1, as the model takes them."""
        return {k: getattr(self, k).unsqueeze(0) for k in ("tokens", "times", "rows", "cols")}

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as safetensors (tensors + metadata)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "tokens": self.tokens.detach().float().contiguous().cpu(),
            "times": self.times.detach().float().contiguous().cpu(),
            "rows": self.rows.detach().long().contiguous().cpu(),
            "cols": self.cols.detach().long().contiguous().cpu(),
        }
        metadata = {"format": FORMAT, "meta": json.dumps(asdict(self.meta))}
        fd, tmp = tempfile.mkstemp(prefix=".memory-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        expected_size: int | None = None,
        expected_dim: int | None = None,
        expected_grid: int | None = None,
        checkpoint: str | None = None,
    ) -> Memory:
        """Read and validate a saved memory; raise MemoryFileError with a clear sentence if it is not valid."""
        path = Path(path)
        name = path.name
        if not path.is_file():
            raise MemoryFileError(f"The memory file {name} does not exist; build the memory first.")
        if (
            expected_size
            and expected_dim
            and path.stat().st_size > expected_size * (expected_dim * 4 + 24) + 2**20
        ):
            raise MemoryFileError(f"{name} is too large to be a memory of this checkpoint; build it again.")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise MemoryFileError(
                f"{name} is not a readable memory file ({e}); build the memory again."
            ) from e
        if metadata.get("format") != FORMAT:
            raise MemoryFileError(f"{name} is not a Long-VMNet memory file; build the memory again.")
        missing = {"tokens", "times", "rows", "cols"} - set(tensors)
        if missing:
            raise MemoryFileError(f"{name} lacks {', '.join(sorted(missing))}; build the memory again.")
        meta = parse_meta(metadata.get("meta", "{}"), name)
        memory = cls(tensors["tokens"], tensors["times"], tensors["rows"], tensors["cols"], meta)
        memory.validate(
            expected_size=expected_size,
            expected_dim=expected_dim,
            expected_grid=expected_grid,
            checkpoint=checkpoint,
            name=name,
        )
        return memory

    def validate(
        self,
        *,
        expected_size: int | None = None,
        expected_dim: int | None = None,
        expected_grid: int | None = None,
        checkpoint: str | None = None,
        name: str = "the memory",
    ) -> None:
        """Raise MemoryFileError unless the tensors agree. `expected_size` is the checkpoint's memory size m: a
        memory holds m tokens, or fewer when its video is shorter than m tokens' worth (never duplicates)."""
        t = self.tokens
        if t.ndim != 2 or t.dtype != torch.float32:
            raise MemoryFileError(
                f"{name} holds tokens of shape {tuple(t.shape)} {t.dtype}, not (m, d) float32."
            )
        m = t.shape[0]
        for key, dtype in (("times", torch.float32), ("rows", torch.int64), ("cols", torch.int64)):
            v = getattr(self, key)
            if v.shape != (m,) or v.dtype != dtype:
                raise MemoryFileError(
                    f"{name} has {key} of shape {tuple(v.shape)} {v.dtype}; expected ({m},)."
                )
        if not 0 < m <= MAX_TOKENS:
            raise MemoryFileError(f"{name} holds {m} tokens; a memory holds 1 to {MAX_TOKENS}.")
        if not torch.isfinite(t).all() or not torch.isfinite(self.times).all():
            raise MemoryFileError(f"{name} contains NaN or infinite values; build the memory again.")
        if t.abs().max() > MAX_TOKEN:
            raise MemoryFileError(f"{name} holds token values beyond ±{MAX_TOKEN:g}; build the memory again.")
        if (self.times < 0).any() or (
            self.meta.duration_s > 0 and (self.times > self.meta.duration_s + 1).any()
        ):
            raise MemoryFileError(f"{name} holds token times outside its video; build the memory again.")
        lo, hi = (
            int(torch.minimum(self.rows, self.cols).min()),
            int(torch.maximum(self.rows, self.cols).max()),
        )
        if lo < 0 or (expected_grid is not None and hi >= expected_grid):
            raise MemoryFileError(
                f"{name} holds patch positions outside the token grid; build the memory again."
            )
        if expected_size is not None and not 0 < m <= expected_size:  # fewer: a video shorter than the memory
            raise MemoryFileError(f"{name} holds {m} tokens but this checkpoint uses {expected_size}.")
        if expected_dim is not None and t.shape[1] != expected_dim:
            raise MemoryFileError(f"{name} has width {t.shape[1]} but this checkpoint uses {expected_dim}.")
        if checkpoint is not None and self.meta.checkpoint != checkpoint:
            raise MemoryFileError(
                f"{name} was built with another checkpoint; build the memory again with this checkpoint."
            )
