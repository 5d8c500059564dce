"""Evaluation end to end on a generated benchmark, the feature cache, the ladder's rungs (prior, blind and
oracle memories, memory statistics), the per-class table, and the recipe's smallest setting."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from longvmnet import cli
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, VideoItem
from longvmnet.hub import load_model
from longvmnet.measure.evaluate import (
    DIAGNOSTIC_KEYS,
    LADDER,
    TABLE_KEYS,
    diagnose,
    evaluate,
    format_table,
    score,
)
from longvmnet.measure.ladder import Prior, blind_memory, memory_stats, oracle_memory
from longvmnet.memory import Memory
from longvmnet.queries import ActivityAnswer, ObjectAnswer, TimeAnswer


def test_feature_cache_is_hit_on_second_run(tiny_benchmark, tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    video = ReSTData(tiny_benchmark).split("all")[0]
    first = FeatureCache(tmp_path, model).video(video.path)
    again = FeatureCache(tmp_path, model)
    second = again.video(video.path)
    assert (again.hits, again.misses) == (1, 0)
    assert np.array_equal(np.asarray(first.tokens), np.asarray(second.tokens))
    c = model.config
    assert second.tokens.shape == (len(second.times), c.tokens_per_frame, c.backbone_dim)
    assert abs(len(second.times) - video.duration * c.memory_fps) <= 1


def test_score_hand_computed():
    acts = ["a", "b", "c"]
    q = {"type": "activity", "answer": {"activities": ["b"]}}
    assert score(q, ActivityAnswer([("b", 0.9), ("a", 0.5), ("c", 0.1)]), acts, 5) == {
        "activity": 1.0,
        "activity_r3": 1.0,
    }
    q = {"type": "time", "answer": {"start": 10.0, "end": 20.0}}
    assert score(q, TimeAnswer(12.0, 20.0, 1.0, [], [], []), acts, 5) == {"time": 1.0}
    assert score(q, TimeAnswer(30.0, 40.0, 1.0, [], [], []), acts, 5) == {"time": 0.0}
    box = [0.1, 0.1, 0.3, 0.3]
    q = {"type": "object", "answer": {"boxes": {"1.0": box, "1.2": box}}}
    a = ObjectAnswer([1.0, 1.2, 1.4], [box, box, box], [0.9, 0.9, 0.1])
    assert score(q, a, acts, 5) == {"object": 1.0}


def test_diagnose_hand_computed():
    box, half = [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.2, 0.1]
    q = {"type": "object", "answer": {"boxes": {"1.0": box, "1.2": box}}}
    # boxes on the true frames: IoU 1 and 0.5; present frames (the best run) {1.2, 1.4} against {1.0, 1.2}: 1 of 3
    a = ObjectAnswer([1.0, 1.2, 1.4], [box, half, box], [0.3, 0.8, 0.9])
    d = diagnose(q, a, 5)
    assert d["object_box_iou"] == pytest.approx(0.75) and d["object_frames_iou"] == pytest.approx(1 / 3)
    q = {"type": "time", "answer": {"start": 10.0, "end": 20.0}}
    assert diagnose(q, TimeAnswer(15.0, 25.0, 1.0, [], [], []), 5) == {"time_tiou": pytest.approx(1 / 3)}
    assert diagnose({"type": "activity", "answer": {"activities": ["a"]}}, ActivityAnswer([]), 5) == {}


@pytest.mark.parametrize("method", ["longvmnet", "baseline", "uniform"])
def test_evaluate_end_to_end(tiny_benchmark, tiny_checkpoint, tmp_path, method):
    model = load_model(tiny_checkpoint)
    data = ReSTData(tiny_benchmark)
    cache = FeatureCache(tmp_path, model)
    result = evaluate(model, data, "all", method=method, cache=cache, progress=False)
    n = sum(len(v.queries) for v in data.split("all"))
    counted = sum(sum(result["counts"][k].values()) for k in ("activity", "object", "time"))
    assert counted == n
    for k in TABLE_KEYS:
        assert all(0.0 <= r <= 100.0 for r in result["table"][k].values())
    for k in DIAGNOSTIC_KEYS:  # one mean per window that holds queries of its kind
        kind = k.split("_")[0]
        assert result["diagnostics"][k].keys() == result["counts"][kind].keys()
        assert all(0.0 <= r <= 1.0 for r in result["diagnostics"][k].values())
    if method == "baseline":
        assert result["stage1_s"] == 0.0 and result["stage2_s"] > 0
    else:
        assert result["stage1_s"] > 0 and result["stage2_s"] > 0


def test_evaluate_cli_prints_the_ladder(tiny_benchmark, tiny_checkpoint, tmp_path, capsys):
    """The default is the whole ladder, every method on the same queries, in one table and one JSON."""
    out = tmp_path / "r.json"
    code = cli.main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_benchmark),
                     "--split", "all", "--cache", str(tmp_path / "cache"), "--json", str(out)])  # fmt: skip
    assert code == 0
    saved = json.loads(out.read_text())
    assert list(saved["methods"]) == list(LADDER)
    n = sum(len(v.queries) for v in ReSTData(tiny_benchmark).split("all"))
    for name, r in saved["methods"].items():
        assert r["method"] == name and set(TABLE_KEYS) <= set(r)
        assert sum(sum(r["counts"][k].values()) for k in ("activity", "object", "time")) == n
        has_memory = name not in ("prior", "blind", "baseline")
        assert set(r["memory"]) == (
            {"enrichment", "top_cell_share", "duplicate_share"} if has_memory else set()
        )
    assert (
        saved["methods"]["oracle"]["memory"]["enrichment"]
        > saved["methods"]["uniform"]["memory"]["enrichment"]
    )
    err = capsys.readouterr().err
    rows = [line.split()[0] for line in err.split("short / medium / long)")[1].splitlines()[2:9]]
    assert rows == list(LADDER) and "per class" in err


def test_evaluate_cli_rejects_an_unknown_method(tiny_benchmark, tiny_checkpoint):
    with pytest.raises(SystemExit, match="Unknown method magic; choose 'ladder'"):
        cli.main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_benchmark),
                  "--method", "prior,magic"])  # fmt: skip


def test_oracle_memory_holds_the_tokens_that_show_activities(tiny_benchmark, tiny_checkpoint, tmp_path):
    from longvmnet.data.rest import token_relevance

    model = load_model(tiny_checkpoint)
    cache = FeatureCache(tmp_path, model)
    c = model.config
    for video in ReSTData(tiny_benchmark).split("all"):
        feats = cache.video(video.path)
        relevant = token_relevance(video.annotations, np.asarray(feats.times), c.grid)
        mem = oracle_memory(model, cache, video)
        assert mem.size == c.memory_size and bool((mem.times[1:] >= mem.times[:-1]).all())
        frames = np.searchsorted(feats.times, mem.times.numpy() - 1e-3)
        held = relevant[frames, (mem.rows * c.grid + mem.cols).numpy()]
        # every token shows an activity, or all the video's activity tokens are in and the rest fills up
        assert held.all() or held.sum() == relevant.sum()
        stats = memory_stats(mem, video, c.grid, c.memory_fps)
        assert stats["enrichment"] == pytest.approx(held.mean() / relevant.mean(), rel=0.05)


def test_random_memory_is_the_same_draw_in_every_run(tiny_benchmark, tiny_checkpoint, tmp_path):
    """The random rung's scores are seeded by the video: two runs keep the same tokens, two videos differ,
    and the caller's random state is left as it was."""
    from dataclasses import replace

    from longvmnet.measure.evaluate import _memory_for

    model = load_model(tiny_checkpoint)
    model.config = replace(model.config, selection="random")
    cache = FeatureCache(tmp_path, model)
    first, second = ReSTData(tiny_benchmark).split("all")[:2]
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    a, b = (_memory_for(model, "random", cache, first) for _ in range(2))
    assert torch.equal(torch.rand(3), want)
    assert torch.equal(a.times, b.times) and torch.equal(a.rows, b.rows) and torch.equal(a.tokens, b.tokens)
    other = _memory_for(model, "random", cache, second)
    assert not (torch.equal(a.times, other.times) and torch.equal(a.rows, other.rows))


def test_blind_memory_has_a_uniform_layout_and_no_content(tiny_benchmark, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    video = ReSTData(tiny_benchmark).split("all")[0]
    mem = blind_memory(model, video)
    c = model.config
    assert mem.size == c.memory_size and not mem.tokens.any()
    assert len(set(mem.times.tolist())) == c.memory_frames and 0 < float(mem.times.min()) < video.duration


def test_memory_stats_hand_computed():
    """One segment on object o (a box over the left column) from 2 s to 3 s; 4 frames at 1 fps, 2 x 2 grid."""
    box = [0.0, 0.0, 0.3, 1.0]
    boxes = [box if 10 <= f <= 15 else None for f in range(20)]  # 5 fps annotation frames
    ann = {"fps": 5, "objects": {"o": {"boxes": boxes}}, "actor": {}, "segments": [
        {"activity": "stir", "object": "o", "start": 2.0, "end": 3.0}]}  # fmt: skip
    video = VideoItem("v", Path("v.mp4"), 4.0, "test", ann)

    # the video: frames 2 and 3 show the object on cells 0 and 2 (the left column): 4 of 16 tokens
    def memory(times, pos):
        pos = torch.tensor(pos)
        return Memory(torch.zeros(len(times), 2), torch.tensor(times, dtype=torch.float32), pos // 2, pos % 2)

    stats = memory_stats(memory([2.0, 3.0, 2.0, 0.0], [0, 2, 0, 1]), video, 2, 1.0)
    assert stats["enrichment"] == pytest.approx((3 / 4) / (4 / 16))
    assert stats["top_cell_share"] == pytest.approx(2 / 4) and stats["duplicate_share"] == pytest.approx(
        1 / 4
    )


def test_recipe_smallest_setting(tmp_path):
    from longvmnet.train.recipe import main

    results = main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "ckpt"),
                    "--variants", "baseline,no_continual,random_memory"])  # fmt: skip
    ladder = {"prior", "blind", "oracle", "baseline", "longvmnet", "random_memory", "uniform_frames"}
    fresh = {"fresh_all", "fresh_blind", "fresh_random"}  # the fresh benchmark's own ladder rungs
    assert ladder | fresh | {"end_to_end", "no_continual", "sweep_2", "sweep_4"} <= set(results)
    assert results["fresh_all"]["split"] == "all" and results["fresh_all"]["videos"] >= 1
    decoder_log = json.loads((tmp_path / "work" / "longvmnet" / "train_log.json").read_text())
    assert decoder_log["config"]["method"] == "decoder" and len(decoder_log["log"]) == 3  # --tiny: 3 steps
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "| Long-VMNet (ships: end to end" in card
    assert "| Long-VMNet, fresh benchmark" in card and "trained with random token selection" in card
    assert "AUC" in card and 0.0 <= results["backbone"]["instance_auc"] <= 1.0
    for row in (
        "| Prior (the query alone",
        "| Blind (the model",
        "| Oracle memory",
        "| Long-VMNet, end to end",
    ):
        assert row in card
    assert "| class | Long-VMNet: activity / time | Oracle memory: activity / time |" in card
    memory_rows = card.split("| method | enrichment (x) |")[1].split("\n\n")[0].splitlines()[2:]
    assert {r.split(" | ")[0][2:] for r in memory_rows} >= {"Oracle memory (the annotated activity tokens)",
                                                              "Uniform frames"}  # fmt: skip
    assert "| memory enrichment in activity tokens (x) | >= 5 |" in card
    assert "| target | goal | test | met | fresh | met |" in card  # the targets read on both sets
    blind_rows = [r for r in card.splitlines() if r.startswith("| activity: minus blind, short |")]
    assert len(blind_rows) == 1 and blind_rows[0].count("|") == 7 and "| - |" not in blind_rows[0]
    assert "## The benchmark (version 2)" in card and "## Choosing the backbone" in card
    (probed,) = results["backbones"]["rows"]  # the fastest candidate, its own tokens probed
    assert probed["tokens"] == "7x7" and probed["channels"] == 112 and probed["frames_per_s"] > 0
    assert (
        0.0 <= probed["token_activity_accuracy"] <= 1.0
        and "| `tf_efficientnet_lite0` (3, 112) | 7x7 x 112 |" in card
    )
    diagnostics = card.split("| method | object_box_iou short")[1].split("\n\n")[0].splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:] for line in diagnostics}
    shipped = "Long-VMNet (ships: end to end, the decoder phase, the reader phase)"
    assert {shipped, "Per-query baseline"} <= set(rows)
    assert len(rows[shipped]) == 9 and all(0.0 <= float(v) <= 1.0 for v in rows[shipped])
    assert load_model(tmp_path / "ckpt").config.grid == 4


class _Data:
    """Just what `Prior` reads of a ReSTData: activities and split(name)."""

    activities = ["a", "b", "c"]

    def __init__(self, videos: list[VideoItem]):
        self.videos = videos

    def split(self, name: str) -> list[VideoItem]:
        return [v for v in self.videos if name in ("all", v.split)]


def test_prior_answers_from_the_training_split():
    objects = {"o1": {"category": "cup"}, "o2": {"category": "pan"}}
    train = VideoItem("v0", Path("v0.mp4"), 300.0, "train", {"objects": objects}, [
        {"type": "activity", "object": "o1", "answer": {"activities": ["b"]}},
        {"type": "activity", "object": "o1", "answer": {"activities": ["b", "c"]}},
        {"type": "activity", "object": "o2", "answer": {"activities": ["a"]}},
        {"type": "object", "answer": {"boxes": {"1.0": [0.0, 0.0, 0.2, 0.2], "1.2": [0.2, 0.2, 0.4, 0.4]}}},
        *({"type": "time", "answer": {"start": 0.0, "end": d}} for d in (10.0, 20.0, 60.0)),
    ])  # fmt: skip
    unseen = {"objects": {"o3": {"category": "cup"}, "o4": {"category": "bowl"}}}
    test = VideoItem("v1", Path("v1.mp4"), 300.0, "test", unseen)
    prior = Prior(_Data([train, test]), object_fps=5)
    cup = prior.answer(test, {"type": "activity", "object": "o3"}).activities
    assert cup == [("b", pytest.approx(3 / 6)), ("c", pytest.approx(2 / 6)), ("a", pytest.approx(1 / 6))]
    bowl = prior.answer(test, {"type": "activity", "object": "o4"}).activities  # unseen category: overall
    assert [a for a, _ in bowl] == ["b", "a", "c"] and bowl[0][1] == pytest.approx(3 / 7)
    obj = prior.answer(test, {"type": "object", "start": 1.0, "end": 1.5})
    assert obj.times == pytest.approx([1.0, 1.2, 1.4]) and obj.present() == [0, 1, 2]
    assert obj.boxes[0] == pytest.approx([0.1, 0.1, 0.3, 0.3])
    span = prior.answer(test, {"type": "time", "start": 100.0, "end": 200.0})
    assert (span.start, span.end) == (140.0, 160.0)  # the median duration, centred
    span = prior.answer(test, {"type": "time", "start": 0.0, "end": 8.0})
    assert (span.start, span.end) == (0.0, 8.0)  # clipped to the window


def _check_per_class(result: dict, data: ReSTData) -> None:
    """Per-class counts match the queries; their weighted mean is the table's mean over all windows."""
    queries = [q for v in data.split("all") for q in v.queries]
    per_class = result["per_class"]
    want = Counter(a for q in queries if q["type"] == "activity" for a in q["answer"]["activities"])
    assert {a: c["count"] for a, c in per_class["activity"].items()} == dict(want)
    want = Counter(q["activity"] for q in queries if q["type"] == "time")
    assert {a: c["count"] for a, c in per_class["time"].items()} == dict(want)
    time_mean = sum(c["recall"] * c["count"] for c in per_class["time"].values()) / sum(want.values())
    table = sum(result["table"]["time"][w] * n for w, n in result["counts"]["time"].items())
    assert time_mean == pytest.approx(table / sum(want.values()), abs=0.2)
    rows = format_table(result).split("per class")[1].splitlines()[1:-1]
    assert {r.split("  ")[0].strip() for r in rows} == set(per_class["activity"]) | set(per_class["time"])


@pytest.mark.parametrize("method", ["prior", "uniform"])
def test_per_class_table(tiny_benchmark, tiny_checkpoint, tmp_path, method):
    data = ReSTData(tiny_benchmark)
    model = load_model(tiny_checkpoint) if method != "prior" else None
    cache = FeatureCache(tmp_path, model) if model is not None else None
    result = evaluate(model, data, "all", method=method, cache=cache, progress=False)
    _check_per_class(result, data)
    if method == "prior":
        assert result["stage1_s"] == 0.0 and result["memory_tokens"] == 0
        n = sum(len(v.queries) for v in data.split("all"))
        assert sum(sum(result["counts"][k].values()) for k in ("activity", "object", "time")) == n


def test_evaluate_prior_cli_needs_no_checkpoint(tiny_benchmark, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LONGVMNET_CHECKPOINT", str(tmp_path / "nowhere"))  # never loaded
    out = tmp_path / "prior.json"
    code = cli.main(["evaluate", "--data", str(tiny_benchmark), "--split", "all", "--method", "prior",
                     "--json", str(out)])  # fmt: skip
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["method"] == "prior" and set(TABLE_KEYS) <= set(saved)
    assert set(saved["per_class"]) == {"activity", "time"} and saved["per_class"]["activity"]
    assert "per class" in capsys.readouterr().err


def test_card_sections_are_replaced_or_appended(tmp_path):
    from longvmnet.measure.report import set_card_section

    assert not set_card_section(tmp_path, "Calibration", "none")  # no model card in the folder
    card = tmp_path / "README.md"
    card.write_text("# Model\n\n## Results\nold table\n\n## Reproduce\nmake checkpoint\n")
    assert set_card_section(tmp_path, "Results", "new table")
    assert set_card_section(tmp_path, "Calibration", "error 0.02")
    assert set_card_section(tmp_path, "Calibration", "error 0.01")  # a rerun replaces its own section
    assert card.read_text() == (
        "# Model\n\n## Results\nnew table\n\n## Reproduce\nmake checkpoint\n\n## Calibration\nerror 0.01\n"
    )


def test_prior_of_another_benchmark_learns_from_that_benchmarks_training_split(tiny_benchmark):
    """A fresh benchmark scored with `--split all` has no held-out training split of its own: its prior rung
    learns from the training videos the model was fit on (`prior_data`)."""
    data = ReSTData(tiny_benchmark)
    trained_on = _Data([])
    trained_on.activities = data.activities
    only = data.activities[0]
    objects = {"o": {"category": "nothing of this benchmark"}}
    trained_on.videos = [VideoItem("t", Path("t.mp4"), 60.0, "train", {"objects": objects},
                                   [{"type": "activity", "object": "o", "answer": {"activities": [only]}}])]  # fmt: skip
    own = evaluate(None, data, "all", method="prior", progress=False)
    other = evaluate(None, data, "all", method="prior", prior_data=trained_on, progress=False)
    activity = [q for v in data.split("all") for q in v.queries if q["type"] == "activity"]
    right = sum(only in q["answer"]["activities"] for q in activity) / len(activity)
    assert sum(other["counts"]["activity"].values()) == len(activity)
    mean = sum(other["table"]["activity"][w] * n for w, n in other["counts"]["activity"].items()) / len(
        activity
    )
    assert mean == pytest.approx(100 * right, abs=0.2)  # R@1x of always naming `only` first
    assert own["table"] != other["table"]
