"""Resumable training state: the model's weights, the optimiser, the loop's position and the memories.

Layout of OUT/train_state/: config.json + model.safetensors (`save_pretrained`) and trainer.pt (optimiser,
step / epoch / batch_in_epoch, memory banks and scans as token provenance, query history as ids, the logs
and the best validated weights). Written by rank 0 only, atomically (a .tmp file renamed); read by rank 0
and broadcast, so the other machines of a multi-node run need no shared folder to resume.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from longvmnet.distributed import World

FIELDS = ("step", "epoch", "batch_in_epoch", "scanned_at", "log", "val_log", "best", "config")


def _arrays_out(d: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    return {k: (torch.from_numpy(np.asarray(f)), torch.from_numpy(np.asarray(p))) for k, (f, p) in d.items()}


def _arrays_in(d: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (f.numpy(), p.numpy()) for k, (f, p) in d.items()}


def save_state(folder: Path, model, opt: torch.optim.Optimizer, *, bank: dict, history: dict, scans: dict,
               **fields) -> None:  # fmt: skip
    """fields: the names in FIELDS (log, val_log and config as JSON-able values, best as (score, state))."""
    folder = Path(folder)
    model.save_pretrained(folder)
    state = {
        "optimizer": opt.state_dict(),
        "bank": _arrays_out(bank),
        "history": {k: [q["id"] for q in v] for k, v in history.items()},
        "scans": _arrays_out(scans),
        **{k: json.dumps(fields[k]) if k in ("log", "val_log", "config") else fields[k] for k in FIELDS},
    }
    torch.save(state, folder / "trainer.pt.tmp")
    (folder / "trainer.pt.tmp").replace(folder / "trainer.pt")


def load_state(folder: Path, queries: dict[str, dict], world: World = World()) -> dict | None:
    """The saved state, or None without one: "model" (a state dict), "optimizer", "bank", "history" (a
    defaultdict of the query dicts, looked up in `queries` by id), "scans" and the FIELDS."""
    folder = Path(folder)
    raw = None
    if world.main and (folder / "trainer.pt").is_file():
        from safetensors.torch import load_file

        raw = torch.load(folder / "trainer.pt", weights_only=True, map_location="cpu")
        raw["model"] = load_file(str(folder / "model.safetensors"))
    raw = world.broadcast(raw)
    if raw is None:
        return None
    return {
        "model": raw["model"],
        "optimizer": raw["optimizer"],
        "bank": _arrays_in(raw["bank"]),
        "history": defaultdict(list, {k: [queries[i] for i in ids] for k, ids in raw["history"].items()}),
        "scans": _arrays_in(raw.get("scans", {})),
        "step": raw["step"],
        "epoch": raw["epoch"],
        "batch_in_epoch": raw["batch_in_epoch"],
        "scanned_at": raw.get("scanned_at", -1),
        "log": json.loads(raw["log"]),
        "val_log": json.loads(raw.get("val_log", "[]")),
        "best": raw.get("best"),
    }
