"""`longvmnet benchmark-stats`: figures computed by hand on a made-up benchmark, and the v2 benchmark's
egocentric scale, ADL-like durations and places on a small generated set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longvmnet import cli
from longvmnet.data import synth
from longvmnet.data.benchmark import VERSION, load_annotations, write_json
from longvmnet.data.stats import benchmark_stats, video_stats


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """Three 12-minute videos, annotations only."""
    root = tmp_path_factory.mktemp("stats") / "b"
    return synth.generate(root, videos=3, minutes=12, seed=4, progress=False, render=False)


def _made_up(root: Path) -> Path:
    """One 10-second video at 1 fps: a 0.5 x 0.2 box acted on for 4 s, another box always in view, a hand."""
    n = 10
    big, small = [0.0, 0.0, 0.5, 0.2], [0.6, 0.6, 0.7, 0.7]
    ann = {"video": "v", "duration": 10.0, "fps": 1,
           "objects": {"a": {"category": "cup", "boxes": [big] * 6 + [None] * 4},
                       "b": {"category": "pan", "boxes": [small] * n}},
           "actor": {"boxes": [[0.1, 0.1, 0.2, 0.2]] * n, "boxes_2": [None] * n},
           "segments": [{"activity": "pour", "object": "a", "start": 2.0, "end": 6.0},
                        {"activity": "wash", "object": "b", "start": 7.0, "end": 8.0}],
           "places": [{"place": "sink", "start": 0.0, "end": 4.0},
                      {"place": "desk", "start": 6.0, "end": 10.0},
                      {"place": "sink", "start": 10.0, "end": 10.0}],
           "crops": {}}  # fmt: skip
    write_json(root / "annotations" / "v.json", ann)
    queries = [{"id": "v/a1", "video": "v", "type": "activity", "window": "short"},
               {"id": "v/t1", "video": "v", "type": "time", "window": "long"}]  # fmt: skip
    videos = {"v": {"duration": 10.0, "annotations": "annotations/v.json"}}
    bench = {"version": VERSION, "activities": ["pour", "wash", "stir"], "videos": videos, "queries": queries}
    write_json(root / "benchmark.json", bench)
    return root


def test_stats_by_hand(tmp_path):
    s = benchmark_stats(_made_up(tmp_path))
    assert s["acting_box_area"]["median"] == pytest.approx(0.1)  # frames 2-5 of a, 0.5 x 0.2
    assert s["acting_box_area"]["p10"] == pytest.approx(0.01 + 0.4 * 0.09)  # and one 0.1 x 0.1 frame of b
    assert s["acting_nearest_hand"] == 1.0  # a's centre is nearer the hand than b's
    assert s["objects_in_view"]["median"] == 1.5 and s["objects_in_view"]["p10"] == 1  # frames 0-3, 6-9
    assert s["segment_duration_s"]["median"] == pytest.approx(2.5) and s["segments"] == 2
    assert s["activity_share"] == {"min": 0.5, "mean": 0.5, "max": 0.5}  # seconds 2-5 and 7 of 10
    assert s["classes"] == {"pour": 1, "wash": 1, "stir": 0}
    assert s["places_per_video"] == {"v": 2} and s["visits_per_video"] == {"v": 3}
    assert s["queries"]["activity"] == {"short": 1, "medium": 0, "long": 0}
    assert s["queries"]["time"]["long"] == 1 and sum(s["queries"]["object"].values()) == 0


def test_generated_benchmark_looks_like_adl(generated):
    """Issue 16's thresholds, from the annotations: the acting object is large, activities last tens of
    seconds, 2-4 places per video, 3-7 objects in view, an activity 15-30% of the time."""
    s = benchmark_stats(generated)
    assert s["acting_box_area"]["median"] >= 0.06 and s["acting_box_area"]["p10"] >= 0.02
    assert s["segment_duration_s"]["median"] >= 30 and s["segment_duration_s"]["p10"] >= 10
    assert all(2 <= n <= 4 for n in s["places_per_video"].values())
    assert 3 <= s["objects_in_view"]["median"] <= 7
    assert 0.12 <= s["activity_share"]["mean"] <= 0.3
    assert s["acting_nearest_hand"] > 0.5
    assert sum(s["classes"].values()) == s["segments"] and all(
        min(v.values()) > 0 for v in s["queries"].values()
    )
    # the same figures from one video's annotations by hand
    ann = load_annotations(generated, "vid_000")
    seg = ann["segments"][0]
    boxes = ann["objects"][seg["object"]]["boxes"][int(seg["start"]) * 5 : int(seg["end"]) * 5]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes if b is not None]
    assert video_stats(ann)["areas"][: len(areas)] == pytest.approx(areas)
    assert np.median(areas) > 0.02


def test_benchmark_stats_cli(generated, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert cli.main(["benchmark-stats", str(generated), "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved == json.loads(capsys.readouterr().out)
    assert saved["videos"] == 3 and saved["acting_box_area"]["median"] >= 0.06
    assert cli.main(["benchmark-stats", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "acting box area" not in err and err.startswith("error:")


def test_stats_table_is_printed(generated, capsys):
    assert cli.main(["benchmark-stats", str(generated)]) == 0
    err = capsys.readouterr().err
    for row in (
        "acting box area",
        "objects in view",
        "segment duration",
        "activity share",
        "places per video",
    ):
        assert row in err
    assert "pick up" in err and "activity" in err and "short" in err
