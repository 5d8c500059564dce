"""Stage 1 over a folder of videos: one memory file per video and an index, resumable, split across ranks.

OUT/index.json: {"format", "videos": {relative path: entry}}, an entry being
  video (path relative to the folder), duration_s, memory (file relative to OUT, None on error),
  sha256 (of the video file), size and mtime_ns (to skip re-hashing an unchanged file), checkpoint
  (fingerprint of the model that built it), status ("done" or "error"), error (the reason, on error),
  frames_seen, build_s.
A video is skipped when its entry has the same checksum and checkpoint and is an error or a memory file that
exists: a second run over the same folder does no work; a changed video or checkpoint is rebuilt. A video that
fails to decode is recorded with its error and the run goes on.

Under torchrun rank 0 plans (what needs building), every rank builds its share, and rank 0 merges the
index. The index is written atomically after each video: rank 0 writes index.json, the others
`.index-rank<r>.json`, which rank 0 folds in at the end (or at the start of the next run, after a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tqdm import tqdm

from longvmnet.distributed import World

FORMAT = "longvmnet-index/1"
INDEX = "index.json"
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")


def find_videos(folder: Path, skip: Path | None = None) -> list[Path]:
    """Video files under `folder` (recursively, by suffix), sorted; none from under `skip`."""
    skip = skip.resolve() if skip is not None else None
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in VIDEO_SUFFIXES
        and not (skip is not None and p.resolve().is_relative_to(skip))
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, value) -> None:
    """Atomically: a temporary file in the same folder, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def read_index(out: Path) -> dict[str, dict]:
    """index.json's entries, with those of rank files left by an interrupted run folded in (rank 0)."""
    entries = {}
    if (out / INDEX).is_file():
        entries = json.loads((out / INDEX).read_text()).get("videos", {})
    for part in sorted(out.glob(".index-rank*.json")):
        entries.update(json.loads(part.read_text()))
    return entries


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def plan(folder: Path, out: Path, entries: dict[str, dict], checkpoint: str) -> tuple[list[dict], int]:
    """-> the videos to build (rel path, sha256, size, mtime_ns), largest first, and how many are skipped."""
    todo, skipped = [], 0
    for path in find_videos(folder, skip=out):
        rel = path.relative_to(folder).as_posix()
        size, mtime = _stat(path)
        old = entries.get(rel, {})
        same_file = old.get("size") == size and old.get("mtime_ns") == mtime and old.get("sha256")
        sha = old["sha256"] if same_file else sha256_file(path)
        done = old.get("status") == "error" or (old.get("memory") and (out / old["memory"]).is_file())
        if old.get("sha256") == sha and old.get("checkpoint") == checkpoint and done:
            skipped += 1
            continue
        todo.append({"video": rel, "sha256": sha, "size": size, "mtime_ns": mtime})
    return sorted(todo, key=lambda t: -t["size"]), skipped


def build_one(model, folder: Path, out: Path, job: dict, checkpoint: str) -> dict:
    """Build one video's memory file -> its index entry (status "error" with the reason if it fails)."""
    from longvmnet.inference import build_memory
    from longvmnet.video import VideoError

    entry = {**job, "checkpoint": checkpoint, "duration_s": None, "memory": None}
    try:
        memory = build_memory(model, folder / job["video"])
    except VideoError as e:  # one sentence already
        return {**entry, "status": "error", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - any failure of one video is recorded, and the corpus goes on
        return {**entry, "status": "error", "error": f"{type(e).__name__}: {e}"}
    name = job["video"] + ".safetensors"
    memory.save(out / name)
    m = memory.meta
    return {**entry, "status": "done", "memory": name, "duration_s": m.duration_s, "frames_seen": m.frames_seen,
            "build_s": round(m.build_s, 3)}  # fmt: skip


def build_corpus(model, folder, out, *, world: World = World(), progress: bool = True) -> dict | None:
    """Memories for every video under `folder` into `out` (see the module docstring).
    -> a summary on rank 0 (index, videos, built, skipped, errors, per_rank), None on the other ranks."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FileNotFoundError(f"The folder {folder} does not exist.")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = model.fingerprint()
    entries, todo, skipped = {}, [], 0
    if world.main:
        entries = read_index(out)
        todo, skipped = plan(folder, out, entries, checkpoint)
        write_json(out / INDEX, {"format": FORMAT, "videos": entries})
        for part in out.glob(".index-rank*.json"):
            part.unlink()
    todo = world.broadcast(todo)
    mine = todo[world.rank :: world.size]  # largest first, dealt round-robin: balanced shares
    own: dict[str, dict] = {}
    desc = "memories" if world.size == 1 else f"memories (rank 0 of {world.size})"
    for job in tqdm(mine, desc=desc, unit="video", disable=not (progress and world.main)):
        own[job["video"]] = build_one(model, folder, out, job, checkpoint)
        if world.main:
            write_json(out / INDEX, {"format": FORMAT, "videos": {**entries, **own}})
        else:
            write_json(out / f".index-rank{world.rank}.json", own)
    parts = world.gather(own)
    if not world.main:
        return None
    for part in parts:
        entries.update(part)
    write_json(out / INDEX, {"format": FORMAT, "videos": entries})
    for part in out.glob(".index-rank*.json"):
        part.unlink()
    built = {k: v for part in parts for k, v in part.items()}
    return {
        "index": str(out / INDEX),
        "videos": len(todo) + skipped,
        "built": sum(e["status"] == "done" for e in built.values()),
        "skipped": skipped,
        "errors": {k: e["error"] for k, e in built.items() if e["status"] == "error"},
        "per_rank": [len(p) for p in parts],
    }
