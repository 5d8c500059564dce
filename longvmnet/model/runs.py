"""Runs of per-time logits: an answer's one interval (`best_run`) and the few best disjoint ones (`best_runs`),
which object and time answers and the activity reader choose among."""

from __future__ import annotations

import torch


def best_run(logits: torch.Tensor) -> tuple[int, int]:
    """The run i..j (inclusive) with the largest sum of logits: the most likely single interval when each
    time is inside independently with probability sigmoid(logit). All negative: the largest one. (l,) -> i, j"""
    best, best_ij, run, start = float("-inf"), (0, 0), 0.0, 0
    for k, v in enumerate(logits.tolist()):
        if run <= 0.0:
            run, start = v, k
        else:
            run += v
        if run > best:
            best, best_ij = run, (start, k)
    return best_ij


def best_runs(logits: torch.Tensor, k: int, gap: int) -> list[tuple[int, int, float]]:
    """Up to k disjoint runs, best first: the best run (`best_run`), then the best one at least `gap` time
    queries away from those taken, and so on; each with its sum of logits. (l,) -> [(i, j, sum)]"""
    left = logits.double().clone()
    runs: list[tuple[int, int, float]] = []
    while len(runs) < k and len(left):
        i, j = best_run(left)
        if left[i] == float("-inf"):  # nothing left to take
            break
        runs.append((i, j, float(logits[i : j + 1].double().sum())))
        left[max(0, i - gap) : j + gap + 1] = float("-inf")
    return runs
