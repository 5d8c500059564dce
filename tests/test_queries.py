"""Decoding per-time scores into answers: the best run of logits, an object answer's present frames, a time
answer's span; the one short sentence a bad range gets."""

import pytest
import torch

from longvmnet.model.runs import best_run, best_runs
from longvmnet.queries import ObjectAnswer, decode


@pytest.mark.parametrize(
    ("logits", "run"),
    [
        ([-1.0, 2.0, -0.5, 3.0, -4.0, 1.0], (1, 3)),  # 2 - 0.5 + 3 = 4.5 beats 3 alone and 1 alone
        ([-3.0, -1.0, -2.0], (1, 1)),  # all negative: the largest one
        ([1.0, 1.0, 1.0], (0, 2)),
        ([5.0, -6.0, 2.0, 2.0], (0, 0)),  # 5 > 2 + 2 and 5 - 6 + 4 = 3
    ],
)
def test_best_run_hand_computed(logits, run):
    assert best_run(torch.tensor(logits)) == run


def test_present_frames_are_one_run():
    a = ObjectAnswer([0.0, 0.2, 0.4, 0.6, 0.8], [[0, 0, 1, 1]] * 5, [0.9, 0.4, 0.9, 0.1, 0.7])
    # logits ~ 2.2, -0.4, 2.2, -2.2, 0.85: the run 0..2 (4.0) beats 4 alone and the whole (2.65)
    assert a.present() == [0, 1, 2]
    assert (
        ObjectAnswer([1.0], [[0, 0, 1, 1]], [0.01]).present() == [0]
        and ObjectAnswer([], [], []).present() == []
    )


def test_best_runs_are_disjoint_and_best_first():
    logits = torch.tensor([3.0, 3.0, -5.0, -5.0, -5.0, 2.0, -5.0, -5.0, 1.0, -5.0])
    assert best_runs(logits, 3, gap=1) == [(0, 1, 6.0), (5, 5, 2.0), (8, 8, 1.0)]
    # gap 3 blocks 2..4 after the first, 5 is the best left; then 6..8 are within 3 of it: -5 at 9 is all
    assert best_runs(logits, 3, gap=3) == [(0, 1, 6.0), (5, 5, 2.0), (9, 9, -5.0)]
    assert best_runs(logits, 5, gap=10) == [(0, 1, 6.0)]  # nothing left after the first
    assert best_runs(logits, 1, gap=0)[0][:2] == best_run(logits)


def test_a_chosen_run_is_what_object_and_time_answers_give():
    a = ObjectAnswer([0.0, 0.2, 0.4, 0.6, 0.8], [[0, 0, 1, 1]] * 5, [0.9, 0.4, 0.9, 0.1, 0.7], run=(4, 4))
    assert a.present() == [4] and a.to_dict()["run"] == [4, 4]
    assert a != ObjectAnswer(a.times, a.boxes, a.presence)  # the same scores, another run
    times = torch.arange(10.0, 20.0)[None]
    inside = torch.full((1, 10), -3.0)
    inside[0, 4:7] = 2.0
    out = {"start_logits": torch.zeros(1, 10), "end_logits": torch.zeros(1, 10), "inside_logits": inside}
    mask = torch.ones(1, 10, dtype=torch.bool)
    (t,) = decode("time", out, times, mask, ["a"], fps=1.0, runs=[(0, 1)])
    assert (t.start, t.end) == (10.0, 12.0) and t.score == pytest.approx(float(torch.tensor(-3.0).sigmoid()))
    (t,) = decode("time", out, times, mask, ["a"], fps=1.0, runs=[None])  # None: the best run
    assert (t.start, t.end) == (14.0, 17.0)


def test_time_answer_is_the_best_run_of_inside_scores():
    times = torch.arange(10.0, 20.0)[None]
    inside = torch.full((1, 10), -3.0)
    inside[0, 4:7] = 2.0
    out = {"start_logits": torch.zeros(1, 10), "end_logits": torch.zeros(1, 10), "inside_logits": inside}
    (a,) = decode("time", out, times, torch.ones(1, 10, dtype=torch.bool), ["a"], fps=1.0)
    assert (a.start, a.end) == (14.0, 17.0)  # the last time query covers one second
    assert a.inside_scores == pytest.approx(inside[0].sigmoid().tolist())
    assert a.score == pytest.approx(float(torch.tensor(2.0).sigmoid()))


def test_time_grid_lies_on_the_frames_at_its_rate():
    """A range starting between frames (39.9 s at 5 fps) samples the frames 40.0, 40.2, ...: the times the
    annotations and the scores index (a grid at 39.9, 40.1, ... matched no annotated box)."""
    from longvmnet.queries import time_grid

    grid = time_grid(39.9, 339.9, 5.0)
    assert (
        len(grid) == 1500
        and float(grid[0]) == pytest.approx(40.0)
        and float(grid[-1]) == pytest.approx(339.8)
    )
    assert torch.allclose(grid * 5, (grid * 5).round(), atol=1e-3)
    assert time_grid(3.05, 3.1, 5.0).tolist() == pytest.approx([3.05])  # no frame inside: the start alone
    assert time_grid(0.0, 4.0, 1.0).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    "start, end, words",
    [
        (0.0, 1e308, ["0.0-1e+308 s is outside the video, which lasts 60.0 s"]),
        (-1e300, 5.0, ["-1e+300-5.0 s is outside"]),
        (30.0, 10.0, ["must end after it starts (got 30.0-10.0 s)"]),
        (float("nan"), 5.0, ["start time must be a number"]),
    ],
)
def test_bad_ranges_are_one_short_sentence(start, end, words):
    from longvmnet.queries import ObjectQuery, QueryError, validate

    with pytest.raises(QueryError) as err:
        validate(ObjectQuery("open", start, end), duration_s=60.0, activities=["open"])
    message = str(err.value)
    assert len(message) < 200 and message.endswith(".")
    for w in words:
        assert w in message, message
