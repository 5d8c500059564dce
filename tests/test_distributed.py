"""Several processes under torchrun (gloo on the CPU): 2 ranks follow 1 rank's trajectory, never share a video
in a step, hold the same memories; build-memory over a folder is resumable, records bad files, splits work.

Run as a script, this file is the worker that torchrun starts (`train_on_ranks`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longvmnet.config import preset
from longvmnet.corpus import build_corpus
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, video_batches
from longvmnet.distributed import World
from longvmnet.model import LongVMNet
from longvmnet.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent


def torchrun(*args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def all_train(tiny_benchmark, tmp_path_factory) -> Path:
    """The tiny benchmark with its 3 videos in the train split, so a batch holds 3 videos."""
    root = tmp_path_factory.mktemp("alltrain") / "bench"
    shutil.copytree(tiny_benchmark, root, ignore=shutil.ignore_patterns("cache"))
    index = json.loads((root / "benchmark.json").read_text())
    for v in index["videos"].values():
        v["split"] = "train"
    (root / "benchmark.json").write_text(json.dumps(index))
    return root


def corpus_folder(folder: Path, make_clip) -> Path:
    """Two real clips, one of random bytes named .mp4 and a truncated copy of a real one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir()
    shutil.move(make_clip("a.mp4", seconds=6), folder / "a.mp4")
    shutil.move(make_clip("b.mkv", seconds=4), folder / "sub" / "b.mkv")
    (folder / "noise.mp4").write_bytes(random.Random(0).randbytes(5000))
    data = (folder / "a.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 3])
    return folder


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for _, p in sorted(model.named_parameters()):
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_on_ranks(bench: Path, out: Path, cache: Path, corpus: Path | None, world: World) -> dict:
    """3 steps of batches of 3 videos, a rescan of the full-scan memories and a corpus build, recording what
    each rank held, its memory banks and its weights after every step."""
    torch.manual_seed(0)
    data = ReSTData(bench)
    model = LongVMNet(preset("tiny", activities=list(data.activities)))
    cfg = TrainConfig(batch_size=3, max_steps=3, epochs=100, lr=3e-3, lr_sampler=3e-3, warmup=1, seed=1)
    tr = Trainer(model, data, FeatureCache(cache, model), cfg, out, world=world)
    steps, step = [], tr.train_step

    def recorded(batch, bank, history):
        logs = step(batch, bank, history)
        steps.append({"held": tr.held, "loss": logs["loss"], "answered": logs["answered"], "weights": digest(model),
                      "bank": {k: [f.tolist(), p.tolist()] for k, (f, p) in sorted(bank.items())}})  # fmt: skip
        return logs

    tr.train_step = recorded
    tr.run(progress=False)
    tr.rescan()
    scans = {k: [f.tolist(), p.tolist()] for k, (f, p) in sorted(tr.scans.items())}
    summary = build_corpus(model, corpus, out / "memories", world=world, progress=False) if corpus else None
    return {"steps": steps, "scans": scans, "corpus": summary}


def test_shards_of_a_batch_never_share_a_video(all_train):
    videos = ReSTData(all_train).split("train")
    for seed in range(5):
        for batch in video_batches(videos, 3, random.Random(seed)):
            for size in (2, 3, 4):
                held = [[v.id for v, _ in batch[World(r, size).shard(len(batch))]] for r in range(size)]
                ids = [i for h in held for i in h]
                assert sorted(ids) == sorted(v.id for v, _ in batch) and len(set(ids)) == len(ids)


def test_two_ranks_follow_one_rank(all_train, tmp_path, make_clip):
    """Same global batches: the same losses, weights equal on both ranks, each video on one rank per step,
    every bank on both ranks after every step, scans and corpus work split and gathered."""
    corpus = corpus_folder(tmp_path / "videos", make_clip)
    cache = tmp_path / "cache"
    one = train_on_ranks(all_train, tmp_path / "one", cache, None, World())
    torchrun(__file__, str(all_train), str(tmp_path / "two"), str(cache), str(corpus))
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in range(2)]
    two = ranks[0]
    print("1 rank :", [s["loss"] for s in one["steps"]], "\n2 ranks:", [s["loss"] for s in two["steps"]])
    assert [s["answered"] for s in two["steps"]] == [s["answered"] for s in one["steps"]] == [3, 6, 9]
    assert [s["loss"] for s in two["steps"]] == pytest.approx([s["loss"] for s in one["steps"]], rel=1e-5)
    for a, b in zip(*(r["steps"] for r in ranks)):
        assert a["weights"] == b["weights"]  # gradients summed: the same step everywhere
        assert not set(a["held"]) & set(b["held"]) and len(a["held"]) + len(b["held"]) == 3
        assert a["bank"] == b["bank"] and len(a["bank"]) == 3  # the banks both ranks wrote, on both
    assert all(a["held"] for r in ranks for a in r["steps"])  # both ranks worked in every step
    assert [s["bank"] for s in two["steps"]] == [s["bank"] for s in one["steps"]]
    assert ranks[0]["scans"] == ranks[1]["scans"] and len(two["scans"]) == 3
    summary = two["corpus"]
    assert summary["per_rank"] == [2, 2] and summary["built"] == 2 and len(summary["errors"]) == 2
    index = json.loads((tmp_path / "two" / "memories" / "index.json").read_text())["videos"]
    assert sorted(index) == ["a.mp4", "cut.mp4", "noise.mp4", "sub/b.mkv"]
    assert not list((tmp_path / "two" / "memories").glob(".index-rank*"))  # merged by rank 0


def test_torchrun_train_writes_one_checkpoint_like_one_process(all_train, tmp_path, capsys):
    from longvmnet.cli import main

    args = ["--preset", "tiny", "--data", str(all_train), "--steps", "4", "--batch-size", "3",
            "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    out = torchrun("-m", "longvmnet.train", *args, "--out", str(tmp_path / "two"))
    assert out.stdout.count('"checkpoint"') == 1  # rank 0 answers for the run
    one, two = (json.loads((tmp_path / d / "train_log.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and len(two["log"]) == 4
    assert [e["loss"] for e in two["log"]] == pytest.approx([e["loss"] for e in one["log"]], rel=1e-5)
    assert (tmp_path / "two" / "model.safetensors").is_file() and (tmp_path / "two" / "train_state").is_dir()
    one_state, two_state = (torch.load(tmp_path / d / "train_state" / "trainer.pt", weights_only=True)
                            for d in ("one", "two"))  # fmt: skip
    assert {k: [t.tolist() for t in v] for k, v in two_state["bank"].items()} == {
        k: [t.tolist() for t in v] for k, v in one_state["bank"].items()
    }


def test_build_memory_over_a_folder_records_bad_files_and_resumes(tmp_path, make_clip, tiny_checkpoint):
    from longvmnet.hub import load_model
    from longvmnet.memory import Memory

    corpus = corpus_folder(tmp_path / "videos", make_clip)
    out = tmp_path / "memories"
    cmd = [sys.executable, "-m", "longvmnet.cli", "build-memory", str(corpus), "--out", str(out),
           "--checkpoint", str(tiny_checkpoint), "--quiet"]  # fmt: skip

    def build() -> dict:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    first = build()
    assert first["videos"] == 4 and first["built"] == 2 and first["skipped"] == 0
    assert set(first["errors"]) == {"noise.mp4", "cut.mp4"}
    index = json.loads((out / "index.json").read_text())["videos"]
    assert index["noise.mp4"]["status"] == "error" and index["noise.mp4"]["error"]
    assert index["noise.mp4"]["sha256"] == hashlib.sha256((corpus / "noise.mp4").read_bytes()).hexdigest()
    for name, seconds in (("a.mp4", 6), ("sub/b.mkv", 4)):
        e = index[name]
        assert e["status"] == "done" and e["duration_s"] == pytest.approx(seconds, abs=0.5)
        assert Memory.load(out / e["memory"]).meta.video == Path(name).name
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    second = build()  # no work: every video is done or recorded as bad
    assert second["built"] == 0 and second["skipped"] == 4 and not second["errors"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == mtimes
    # a torchrun run killed after rank 1 built a.mp4: its entry sits in rank 1's file, folded in by rank 0
    whole = json.loads((out / "index.json").read_text())
    (out / ".index-rank1.json").write_text(json.dumps({"a.mp4": whole["videos"].pop("a.mp4")}))
    (out / "index.json").write_text(json.dumps(whole))
    model = load_model(tiny_checkpoint)
    third = build_corpus(model, corpus, out, progress=False)
    assert third["built"] == 0 and third["skipped"] == 4 and not list(out.glob(".index-rank*"))
    shutil.move(make_clip("a2.mp4", seconds=3), corpus / "a.mp4")  # a video replaced: its checksum changes
    fourth = build_corpus(model, corpus, out, progress=False)
    assert fourth["built"] == 1 and fourth["skipped"] == 3
    assert json.loads((out / "index.json").read_text())["videos"]["a.mp4"]["duration_s"] == pytest.approx(
        3, abs=0.5
    )


if __name__ == "__main__":  # the worker torchrun starts: BENCH OUT CACHE CORPUS
    from longvmnet import distributed

    bench, out, cache, corpus = map(Path, sys.argv[1:5])
    with distributed.session("cpu") as world:
        result = train_on_ranks(bench, out, cache, corpus, world)
        (out / f"rank{world.rank}.json").write_text(json.dumps(result))
