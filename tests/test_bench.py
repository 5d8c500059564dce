"""The speed benchmark: its smallest setting through the CLI (keys and sane values, no timing goals), and the
baseline's decoded windows matching the frames stage 1 and the feature cache see."""

import json
import shutil

import numpy as np
import pytest

from longvmnet import cli
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData
from longvmnet.hub import load_model
from longvmnet.measure.bench import TYPES, window_clips
from longvmnet.measure.evaluate import WINDOWS


def test_bench_smallest_through_cli(tiny_checkpoint, tmp_path, capsys):
    out, ckpt = tmp_path / "bench.json", tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "README.md").write_text("# A card\n\n## Results\nnumbers\n")
    args = ["bench", "--smallest", "--checkpoint", str(ckpt), "--work", str(tmp_path / "work"), "--card"]
    assert cli.main([*args, "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    card = (ckpt / "README.md").read_text()
    assert (
        card.startswith("# A card")
        and "## Results\nnumbers" in card
        and "## Speed\n`longvmnet bench --smallest`" in card
    )
    assert all(f"| {goal} " in card for goal in r["goals"]) and "| speedup (both stages) / limit |" in card
    for key in ("speedup", "stage1_s", "stage2_s", "baseline_s", "stage1_backbone_ratio", "peak_rss_mb",
                "query_p50_ms", "query_p95_ms", "batched_qps", "sampler_step", "goals", "notes", "machine"):  # fmt: skip
        assert key in r, key
    for key in ("speedup_limit", "stage2_speedup", "stage1_seconds", "speedup_vs_limit"):
        assert key in r, key
    for table in ("speedup", "stage2_speedup", "speedup_limit", "speedup_vs_limit", "stage2_s", "baseline_s",
                  "stage1_share_s"):  # fmt: skip
        for t in TYPES:
            assert set(r[table][t]) == {*WINDOWS, "all"} and all(v > 0 for v in r[table][t].values()), table
    assert sum(r["queries"][t]["all"] for t in TYPES) >= 2 * 9  # 2 videos x 3 types x 3 windows
    assert r["stage1_s"]["total"] > 0 and r["stage1_s"]["frames"] >= 2 * 29
    runs = r["stage1_s"]["runs"]  # each video's stage 1 timed before and after its baseline queries
    assert all(len(x) == 2 and min(x) > 0 and r["stage1_s"]["per_video"][v] == pytest.approx(sum(x) / 2, abs=2e-3)
               for v, x in runs.items())  # fmt: skip
    assert 0 < r["stage1_backbone_ratio"] < 10 and r["backbone_fps"] > 0 and r["sampler_fps"] > 0
    assert list(r["backbone_fps_by_micro_batch"]) == ["1", "2", "4", "8", "16"]
    assert all(fps > 0 for fps in r["backbone_fps_by_micro_batch"].values())
    assert list(r["peak_rss_mb"]) == list(r["stage1_seconds"]) == ["20s", "1min", "3min"]
    assert all(r["speedup_vs_limit"][t][w] == pytest.approx(r["speedup"][t][w] / r["speedup_limit"][t][w], rel=1e-2)
               for t in TYPES for w in WINDOWS)  # fmt: skip
    assert all(50 < mb < 20_000 for mb in r["peak_rss_mb"].values())
    assert all(run["frames"] >= run["video_s"] - 1 for run in r["constant_memory_runs"].values())
    assert 0.5 < r["peak_rss_growth"] < 2
    for t in TYPES:
        assert 0 < r["query_p50_ms"][t] <= r["query_p95_ms"][t] and r["batched_qps"][t] > 0
    for method in ("chunked", "softmax", "hard"):
        step = r["sampler_step"][method]
        assert step["step_s"] > 0 and step["peak_mb"] >= 0
    assert all(isinstance(g["met"], bool) for g in r["goals"].values())
    printed = capsys.readouterr()
    assert "speedup with stage 1" in printed.err and json.loads(printed.out)["mode"] == "smallest"


@pytest.mark.parametrize("start,end", [(0.0, 20.0), (13.0, 41.0)])
def test_baseline_window_decodes_the_cached_frames(tiny_benchmark, tiny_checkpoint, tmp_path, start, end):
    model = load_model(tiny_checkpoint)
    video = ReSTData(tiny_benchmark).split("all")[0]
    feats = FeatureCache(tmp_path, model).video(video.path)
    clips = list(window_clips(model, video.path, start, end))
    times = np.concatenate([t.numpy() for t, _ in clips])
    cached = feats.times[(feats.times >= start - 1e-3) & (feats.times <= end + 1e-3)]
    np.testing.assert_allclose(times, cached, atol=1e-3)
    assert all(len(t) <= model.config.clip_len and tok.shape[:2] == (len(t), 16) for t, tok in clips)


def test_machine_load_names_other_busy_processes_only(monkeypatch):
    """ps lists itself, often at a high %CPU for its short life; that and this process are not "others"."""
    import os
    import subprocess

    from longvmnet.measure import resources as measure

    listing = "\n".join([
        "    PID %CPU     ELAPSED COMMAND",
        f"{os.getpid():>7} 99.0       01:00 python -m pytest",
        "   4242 100.0       00:00 ps -eo pid,pcpu,etime,args --sort=-pcpu",
        "    777 55.5       10:00 ffmpeg -i big.mp4",
        "    778  2.0       10:00 sleep 100",
    ])  # fmt: skip
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, listing, ""))
    assert measure.machine_load()["busy"] == ["    777 55.5       10:00 ffmpeg -i big.mp4"]
