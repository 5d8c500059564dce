"""Evaluation end to end on a generated benchmark, the feature cache, and the recipe's smallest setting."""

import json

import numpy as np
import pytest

from longvmnet import cli
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData
from longvmnet.evaluate import DIAGNOSTIC_KEYS, TABLE_KEYS, diagnose, evaluate, score
from longvmnet.hub import load_model
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
    # boxes on the true frames: IoU 1 and 0.5; present frames {1.0, 1.4} against true {1.0, 1.2}: 1 of 3
    a = ObjectAnswer([1.0, 1.2, 1.4], [box, half, box], [0.9, 0.1, 0.9])
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


def test_evaluate_cli_writes_json(tiny_benchmark, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli.main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_benchmark),
                     "--split", "all", "--json", str(out)])  # fmt: skip
    assert code == 0
    table = json.loads(out.read_text())
    assert set(TABLE_KEYS) <= set(table)
    assert "activity R@1x" in capsys.readouterr().err


def test_recipe_smallest_setting(tmp_path):
    from longvmnet.recipe import main

    results = main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "ckpt"), "--pool-videos", "2",
                    "--variants", "longvmnet,baseline,no_continual,random_memory,centre"])  # fmt: skip
    assert {
        "longvmnet",
        "baseline",
        "no_continual",
        "random_memory",
        "uniform_frames",
        "sweep_2",
        "sweep_4",
        "fresh_all",
        "bundled",
    } <= set(results)
    assert results["fresh_all"]["split"] == "all" and results["fresh_all"]["videos"] >= 1
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "| Long-VMNet |" in card
    assert "| Long-VMNet, fresh benchmark" in card and "trained with random token selection" in card
    assert "AUC" in card and 0.0 <= results["backbone"]["instance_auc"] <= 1.0 and "pool of 2" in card
    assert "centre" in results and "| Crops fused by their middle tokens" in card
    diagnostics = card.split("| method | object_box_iou short")[1].split("\n\n")[0].splitlines()[2:]
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:] for line in diagnostics}
    assert {"Long-VMNet", "Per-query baseline"} <= set(rows)
    assert len(rows["Long-VMNet"]) == 9 and all(0.0 <= float(v) <= 1.0 for v in rows["Long-VMNet"])
    assert load_model(tmp_path / "ckpt").config.grid == 4
