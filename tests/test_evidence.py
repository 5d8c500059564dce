"""What the demo shows beside an answer, without Gradio: evidence tokens and coverage, find-this-object,
the out-of-domain score and threshold, the model card's figures, and the calibration fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from longvmnet.config import preset
from longvmnet.explain import calibration, domain, find
from longvmnet.explain.evidence import (
    ACTED,
    MATCH,
    SIMILAR,
    answer_with_tokens,
    coverage,
    explain,
    top_tokens,
)
from longvmnet.inference import answer
from longvmnet.memory import Memory, MemoryMeta
from longvmnet.model import LongVMNet
from longvmnet.queries import ActivityQuery, ObjectQuery, TimeQuery

ROOT = Path(__file__).resolve().parent.parent
CARD = ROOT / "checkpoints" / "longvmnet-synth" / "README.md"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LongVMNet(preset("tiny")).eval()


def memory_of(tokens: torch.Tensor, times: list[float], grid: int = 4, duration: float = 20.0) -> Memory:
    n = len(times)
    return Memory(tokens.float(), torch.tensor(times).float(), torch.arange(n) // grid % grid,
                  torch.arange(n) % grid, MemoryMeta(video="v.mp4", duration_s=duration, fps=1.0))  # fmt: skip


@pytest.fixture(scope="module")
def memory(model):
    torch.manual_seed(1)
    c = model.config
    times = [float(t) for t in torch.randint(0, 20, (c.memory_size,)).sort().values]
    return memory_of(torch.randn(c.memory_size, c.d_model), times)


def test_answer_with_tokens_is_the_answer_of_inference(model, memory):
    crop = np.random.default_rng(0).integers(0, 255, (20, 16, 3), dtype=np.uint8)
    for q in (ActivityQuery(crop, 2, 12), ObjectQuery("pour", 2, 12), TimeQuery("stir", crop, 0, 20)):
        got, logits = answer_with_tokens(model, memory, q)
        assert got == answer(model, memory, [q])[0]
        assert logits is None or logits.shape == (
            memory.size,
        )  # the pointer's or the reader's per-token scores
    assert (
        answer_with_tokens(model, memory, ObjectQuery("pour", 2, 12))[1] is not None
    )  # tiny has the pointer


def test_top_tokens_prefer_the_range_and_rank_by_score(memory):
    scores = torch.arange(memory.size).float()  # the last token scores highest
    inside = (memory.times >= 5) & (memory.times <= 8)
    top = top_tokens(memory, scores, k=3, start=5, end=8)
    assert [t.index for t in top] == torch.nonzero(inside).flatten().tolist()[::-1][:3]
    assert all(5 <= t.time <= 8 for t in top) and [t.score for t in top] == sorted(
        (t.score for t in top), reverse=True
    )
    empty = top_tokens(memory, scores, k=2, start=50, end=60)  # no token in range: the best of all
    assert [t.index for t in empty] == [memory.size - 1, memory.size - 2]


def test_explain_falls_back_to_similarity_to_the_crop(model, memory):
    crop = np.full((16, 16, 3), 90, np.uint8)
    q = ActivityQuery(crop, 0, 20)
    assert explain(model, memory, TimeQuery("stir", crop, 0, 20), torch.zeros(memory.size)).source == MATCH
    ev = explain(model, memory, q, None, k=4)
    assert ev.source == SIMILAR and len(ev.tokens) == 4
    sims = find.similarity(memory, find.crop_vector(model, crop))
    assert ev.tokens[0].score == pytest.approx(float(sims.max()), abs=1e-4)
    assert explain(model, memory, ObjectQuery("pour", 0, 5), None) is None


def test_activity_evidence_is_the_frames_the_reader_reads(model, memory):
    """An activity answer's evidence: the tokens of the frames its reader reads (the best-scored share of the
    range's frames), most like the crop first, their scores the similarity; no others."""
    from longvmnet.model.reader import select_frames

    crop = np.full((16, 16, 3), 90, np.uint8)
    q = ActivityQuery(crop, 5, 15)
    acted = memory.times.clone()  # later frames score higher: the reader reads the range's last frames
    ev = explain(model, memory, q, acted, k=memory.size)
    assert ev.source == ACTED
    inside = (memory.times >= 5) & (memory.times <= 15)
    read = select_frames(memory.times, inside, acted) > 0
    sims = find.similarity(memory, find.crop_vector(model, crop))
    assert {t.index for t in ev.tokens} == set(torch.nonzero(read).flatten().tolist())
    assert all(t.score == pytest.approx(float(sims[t.index]), abs=1e-4) for t in ev.tokens)
    assert [t.score for t in ev.tokens] == sorted((t.score for t in ev.tokens), reverse=True)
    assert len(explain(model, memory, q, acted, k=2).tokens) == 2
    got, acted = answer_with_tokens(model, memory, q)  # the model's own: its reader's scores per token
    assert acted is not None and acted.shape == (memory.size,)


def test_coverage_counts_tokens_and_frames():
    mem = memory_of(torch.randn(6, 4), [1.0, 1.0, 2.0, 7.0, 7.0, 7.0])
    cov = coverage(mem, 0.5, 2.5, per_frame=4)
    assert (cov.tokens, cov.frames, cov.weak) == (3, 2, True)
    assert not coverage(mem, 0, 10, per_frame=4).weak


def test_find_ranks_the_crops_own_tokens_first(model):
    vector = torch.nn.functional.normalize(torch.ones(model.config.d_model), dim=0)
    tokens = torch.randn(32, model.config.d_model)
    tokens[10] = vector * 3  # same direction as the crop, another length: cosine 1
    tokens[20] = vector + 0.1 * tokens[21]
    mem = memory_of(tokens, [float(i // 4) for i in range(32)])
    found = find.find(mem, vector, k=2)
    assert found.matches == [10, 20] and found.times == [float(t) for t in range(8)]
    assert found.scores[2] == pytest.approx(1.0, abs=1e-5) and max(found.scores) == found.scores[2]
    part = find.find(mem, vector, start=4, end=7, k=2)
    assert part.times == [4.0, 5.0, 6.0, 7.0] and part.matches[0] == 20


def test_find_precision_on_a_generated_benchmark(model, tiny_benchmark):
    ann = {"fps": 1, "objects": {"o": {"boxes": [None, [0.0, 0.0, 0.3, 0.3], None, None]}}}
    assert find.on_object(ann, "o", 1.0, 0, 0, 4) and not find.on_object(ann, "o", 1.0, 2, 2, 4)
    assert find.visible(ann, "o", 1.2) and not find.visible(ann, "o", 2.0)
    from longvmnet.data.rest import ReSTData

    data = ReSTData(tiny_benchmark)
    out = find.precision(model, data, "all", find.memories_for(model, None), k=5, times=3)
    assert out["crops"] > 0 and out["videos"] == 3 and (out["k"], out["times"]) == (5, 3)
    assert all(0 <= out[key] <= 1 for key in ("token", "token_chance", "time", "time_chance"))


def test_token_stats_score_and_threshold():
    torch.manual_seed(0)
    train = torch.randn(4000, 8) * 2 + 5
    stats = domain.TokenStats.fit(train)
    assert stats.score(torch.randn(500, 8) * 2 + 5) == pytest.approx(1.0, abs=0.1)
    assert stats.score(torch.randn(500, 8) * 2 + 15) > 4
    assert stats.score(torch.cat([train[:10]] * 3)) == pytest.approx(
        stats.score(train[:10])
    )  # duplicates once
    pooled = domain.TokenStats.fit_pooled(train, threshold=2.0)
    back = domain.TokenStats.from_dict(pooled.to_dict())
    assert back.threshold == 2.0 and back.score(train[:1]) == pytest.approx(pooled.score(train[:1]), rel=1e-4)
    assert domain.threshold([0.9, 1.0], [1.5, 2.0]) == pytest.approx(1.25)  # midway when they separate
    assert domain.threshold([0.9, 1.0, 1.1, 1.6], [1.5, 2.0]) == 1.1  # else the best balanced cut


def test_the_bundled_model_card_is_read():
    card = CARD.read_text()
    title, header, rows = domain.accuracy_table(card)
    assert title.startswith("Results") and len(header) == 9 and header[0].startswith("activity")
    assert rows[0][0].startswith("Long-VMNet") and len(rows[0][1]) == 9
    # the card has the fresh benchmark: its rows, the prior's as the reference (unseen videos)
    assert rows[0][0].startswith("Long-VMNet, fresh") and rows[1][0].startswith("Prior, fresh")
    blind = card.replace("| Prior, fresh benchmark |", "| Prior of another kind |")  # an older card: blind
    assert domain.accuracy_table(blind)[2][1][0].startswith("Blind, fresh")
    assert "fresh" in title
    assert all(float(x) >= 0 for x in rows[0][1])
    assert domain.training_sentence(card).startswith("Trained on ")


def test_calibration_recovers_a_known_temperature_and_bias():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(len(z)) < calibration.sigmoid(z / 2.0 - 1.0)).astype(float)  # truth: T = 2, bias -1
    t, b = calibration.fit_platt(z, y)
    assert t == pytest.approx(2.0, rel=0.1) and b == pytest.approx(-1.0, abs=0.1)
    p = calibration.sigmoid(z)
    assert calibration.ece(calibration.rescale(p, t, b), y) < 0.02 < calibration.ece(p, y)
    y2 = (rng.random(len(z)) < calibration.sigmoid(z / 2.0)).astype(float)
    assert calibration.fit_temperature(z, y2) == pytest.approx(2.0, rel=0.1)
    rows = calibration.fit_pairs({"time": (p, y)}, {"time": (p, y)})["time"]
    assert rows["ece_val_after"] < rows["ece_val_before"] and rows["method"] == "platt"


def test_figures_of_another_checkpoint_are_not_used(tmp_path):
    import json

    from longvmnet.demo.text import knows_panel

    stats = domain.TokenStats.fit(torch.randn(100, 8), threshold=1.2).to_dict()
    (tmp_path / domain.FILE).write_text(
        json.dumps({"format": domain.FORMAT, "checkpoint": "other", "memory": stats})
    )
    (tmp_path / calibration.FILE).write_text(json.dumps({"checkpoint": "other", "kinds": {}}))
    k = domain.knowledge(tmp_path, preset("tiny"), "mine")
    assert k.stale and k.memory is None and k.training_data == ""
    assert calibration.load(tmp_path, "mine") is None and calibration.scaling(None, "time") == (1.0, 0.0)
    panel = knows_panel(k, None, None)
    assert (
        "belong to another checkpoint" in panel
        and "no model card" in panel
        and "no calibration.json" in panel
    )
    fresh = domain.knowledge(tmp_path, preset("tiny"), "other")
    assert not fresh.stale and fresh.memory.threshold == 1.2
