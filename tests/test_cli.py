"""The command line end to end on a real video file with a tiny random checkpoint."""

import json
import subprocess
import sys

import pytest


def run(*args, ok=True):
    out = subprocess.run(
        [sys.executable, "-m", "longvmnet.cli", *args], capture_output=True, text=True, timeout=300
    )
    if ok:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def built(tiny_benchmark, tiny_checkpoint, tmp_path_factory):
    mem = tmp_path_factory.mktemp("mem") / "m.safetensors"
    video = tiny_benchmark / "videos" / "vid_000.mp4"
    out = run("build-memory", str(video), "--checkpoint", str(tiny_checkpoint), "--out", str(mem), "--quiet")
    return mem, json.loads(out.stdout)


def test_build_memory(built):
    mem, info = built
    assert mem.is_file()
    assert (
        info["tokens"] == 4 * 16
        and info["frames_seen"] >= 59
        and info["duration_s"] == pytest.approx(60, abs=1)
    )


def test_ask_all_three_kinds(built, tiny_benchmark, tiny_checkpoint):
    mem, _ = built
    crop = next((tiny_benchmark / "crops" / "vid_000").glob("*.png"))
    ck = ["--checkpoint", str(tiny_checkpoint)]
    a = json.loads(
        run("ask", str(mem), *ck, "activity", "--object", str(crop), "--start", "0", "--end", "30").stdout
    )
    assert len(a["activities"]) == 10 and all(0 <= p <= 1 for _, p in a["activities"])
    o = json.loads(
        run("ask", str(mem), *ck, "object", "--activity", "pour", "--start", "10", "--end", "20").stdout
    )
    assert len(o["boxes"]) == len(o["times"]) == 51 and o["times"][0] == 10.0
    t = json.loads(run("ask", str(mem), *ck, "time", "--activity", "stir", "--object", str(crop)).stdout)
    assert 0 <= t["start"] < t["end"] <= 61


def test_errors_are_one_sentence(built, tiny_benchmark, tiny_checkpoint, tmp_path):
    mem, _ = built
    ck = ["--checkpoint", str(tiny_checkpoint)]
    bad = run("ask", str(mem), *ck, "object", "--activity", "juggle", ok=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: Unknown activity 'juggle'")
    bad = run("ask", str(mem), *ck, "object", "--activity", "pour", "--start", "50", "--end", "500", ok=False)
    assert bad.returncode == 2 and "outside the video" in bad.stderr
    text = tmp_path / "notavideo.mp4"
    text.write_text("hello")
    bad = run("build-memory", str(text), *ck, "--out", str(tmp_path / "x.safetensors"), ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    bad = run(
        "build-memory",
        str(text),
        "--checkpoint",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "y"),
        ok=False,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_probe_writes_its_figures(tiny_benchmark, tiny_checkpoint, tmp_path):
    """`longvmnet probe` fits on the training videos plus a pool and scores a split; a training set with no
    hand is refused in one sentence."""
    out = tmp_path / "probe.json"
    ck = ["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_benchmark), "--cache", str(tmp_path / "c")]
    res = json.loads(run("probe", *ck, "--pool", str(tiny_benchmark), "--split", "all", "--steps", "5",
                         "--motion", "1", "--readers", "--json", str(out)).stdout)  # fmt: skip
    assert json.loads(out.read_text()) == res and 0 <= res["hand_auc"] <= 1 and res["motion"] == 1
    bench = json.loads((tiny_benchmark / "benchmark.json").read_text())
    asked = [q["video"] for q in bench["queries"] if q["type"] == "activity"]
    train = sum(bench["videos"][v]["split"] == "train" for v in asked)
    assert res["readers"]["queries"] == {
        "train": train + len(asked),
        "scored": len(asked),
    }  # the pool fits too
    grid = json.loads((tiny_checkpoint / "config.json").read_text())["grid"]
    assert res["samples"]["hand"]["scored"] == grid**2 * sum(
        round(json.loads(p.read_text())["duration"]) for p in (tiny_benchmark / "annotations").glob("*.json")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "benchmark.json").write_text(json.dumps({"activities": ["pour"], "videos": {}, "queries": []}))
    bad = run("probe", *ck[:2], "--data", str(empty), "--eval-data", str(tiny_benchmark), ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1].startswith("error: The training videos show no hand")
