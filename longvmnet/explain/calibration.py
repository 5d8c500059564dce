"""Calibrated confidence: one temperature (and bias) per query kind, fitted on the validation split.

What each confidence is (a probability's logit z becomes z / T + b, with the kind's temperature T and bias b):
  activity  P(the class is done to the crop's object in the range), fitted on every (query, class) pair; an
            answer shows its top class's.
  object    P(the sampled frame shows the activity's object), fitted on every sampled frame; an answer shows
            the mean over its predicted frames.
  time      P(the activity is under way at t), fitted on every time query; an answer shows the mean over its
            predicted span.
Two fits minimise the negative log-likelihood on the val split: the temperature alone (b = 0), and the
temperature with a bias (Platt scaling). The bias matters here: presence and inside scores are trained with
positives and negatives weighted equally, so their raw probabilities are shifted from the true base rate, which
no temperature corrects. The fit with the lower ECE on val is used. The expected calibration error (ECE, 15
equal-width bins, over the same pairs) is reported before (T = 1, b = 0) and after, on val and on the held-out
test split.
Written to <checkpoint>/calibration.json by

    python -m longvmnet.explain.calibration --checkpoint checkpoints/longvmnet-synth --data runs/recipe/data \
        --cache runs/recipe/cache
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

FILE = "calibration.json"
KINDS = ("activity", "object", "time")
MAX_T = 20.0  # the largest temperature fitted
EPS = 1e-6


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def rescale(p, temperature: float, bias: float = 0.0) -> np.ndarray:
    """Probabilities with their logits z turned into z / temperature + bias."""
    return sigmoid(logit(p) / temperature + bias)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float, bias: float = 0.0) -> float:
    z = logits / temperature + bias
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))  # binary cross-entropy from logits


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, MAX_T] (log grid, then refined) with the lowest NLL."""
    grid = np.exp(np.linspace(math.log(0.05), math.log(MAX_T), 241))
    best = grid[int(np.argmin([nll(logits, labels, t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.03, 0.03, 61))
    return float(fine[int(np.argmin([nll(logits, labels, t) for t in fine]))])


def fit_platt(logits: np.ndarray, labels: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(temperature, bias) with the lowest NLL, the temperature at most MAX_T: a one-feature logistic
    regression by Newton's method with a backtracking line search (plain Newton steps overshoot from a poor
    start)."""
    x = np.stack([logits, np.ones_like(logits)], 1)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0.0, z) - labels * z))

    w = np.array([1.0, 0.0])
    for _ in range(steps):
        p = sigmoid(x @ w)
        grad = x.T @ (p - labels) / len(x)
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(x) + 1e-9 * np.eye(2)
        step, size, now = np.linalg.solve(hess, grad), 1.0, loss(w)
        while loss(w - size * step) > now and size > 1e-6:
            size /= 2
        w = w - size * step
        if np.abs(size * step).max() < 1e-8:
            break
    if w[0] < 1 / MAX_T:  # the scores barely rank the outcomes here: the largest temperature, its best bias
        w[0] = 1 / MAX_T
        for _ in range(steps):
            p = sigmoid(x @ w)
            w[1] -= np.sum(p - labels) / max(np.sum(p * (1 - p)), 1e-9)
    return float(1.0 / w[0]), float(w[1])


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width bins of |mean outcome - mean probability| x share."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(labels[sel].mean() - probs[sel].mean())
    return float(total)


def pairs(q: dict, answer, activities: list[str], object_fps: float) -> tuple[list[float], list[float]]:
    """(probabilities, outcomes) of one answered benchmark query, as the module docstring defines them."""
    ans = q["answer"]
    if q["type"] == "activity":
        true = set(ans["activities"])
        return [p for _, p in answer.activities], [float(a in true) for a, _ in answer.activities]
    if q["type"] == "object":
        frames = {round(float(t) * object_fps) for t in ans["boxes"]}
        return answer.presence.tolist(), [
            float(round(t * object_fps) in frames) for t in answer.times.tolist()
        ]
    inside = [float(ans["start"] - 1e-6 <= t < ans["end"]) for t in answer.times]
    return list(answer.inside_scores), inside


def collect(model, data, split: str, memories) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Answer every query of the split's videos from their memories; (probabilities, outcomes) per kind."""
    from longvmnet.inference import answer
    from longvmnet.measure.evaluate import to_query

    c = model.config
    out = {k: ([], []) for k in KINDS}
    for video in data.split(split):
        memory = memories(video)
        queries = video.queries
        for q, a in zip(queries, answer(model, memory, [to_query(q, data) for q in queries])):
            p, y = pairs(q, a, c.activities, c.object_fps)
            out[q["type"]][0].extend(p)
            out[q["type"]][1].extend(y)
    return {k: (np.array(p), np.array(y)) for k, (p, y) in out.items() if p}


def fit_pairs(val: dict, test: dict) -> dict:
    """Per kind: both fits on val, the one with the lower val ECE kept, ECE before and after on val and test."""
    out = {}
    for kind, (p, y) in val.items():
        z = logit(p)
        fits = {"temperature": (fit_temperature(z, y), 0.0), "platt": fit_platt(z, y)}
        eces = {name: ece(rescale(p, *tb), y) for name, tb in fits.items()}
        method = min(eces, key=eces.get)
        t, b = fits[method]
        row = {"method": method, "temperature": round(t, 4), "bias": round(b, 4), "val_pairs": int(len(p)),
               "ece_val_before": round(ece(p, y), 4), "ece_val_after": round(eces[method], 4),
               "ece_val_temperature_only": round(eces["temperature"], 4)}  # fmt: skip
        if kind in test:
            tp, ty = test[kind]
            row |= {"test_pairs": int(len(tp)), "ece_test_before": round(ece(tp, ty), 4),
                    "ece_test_after": round(ece(rescale(tp, t, b), ty), 4),
                    "ece_test_temperature_only": round(ece(rescale(tp, fits["temperature"][0]), ty), 4)}  # fmt: skip
        out[kind] = row
    return out


def fit(model, data, memories, *, pairs_file: str | None = None, progress=print) -> dict:
    """Answer the val and test splits (or read their pairs from `pairs_file`, an .npz it also writes)."""
    if pairs_file and Path(pairs_file).is_file():
        raw = np.load(pairs_file)
        split = {
            s: {k: (raw[f"{s}_{k}_p"], raw[f"{s}_{k}_y"]) for k in KINDS if f"{s}_{k}_p" in raw}
            for s in ("val", "test")
        }
    else:
        split = {s: collect(model, data, s, memories) for s in ("val", "test")}
        progress("answered the val and test splits")
        if pairs_file:
            np.savez_compressed(pairs_file, **{f"{s}_{k}_{n}": v for s, d in split.items() for k, pv in d.items()
                                               for n, v in zip("py", pv)})  # fmt: skip
    return {"checkpoint": model.fingerprint(), "bins": 15, "kinds": fit_pairs(split["val"], split["test"])}


def load(folder: str | Path | None, fingerprint: str) -> dict | None:
    """The checkpoint's calibration.json when it was fitted for this checkpoint, else None."""
    path = Path(folder) / FILE if folder else None
    try:
        found = json.loads(path.read_text()) if path and path.is_file() else None
    except (OSError, ValueError):
        return None
    return found if found and found.get("checkpoint") == fingerprint else None


def scaling(calibration: dict | None, kind: str) -> tuple[float, float]:
    """The kind's fitted (temperature, bias); (1.0, 0.0): uncalibrated."""
    row = (calibration or {}).get("kinds", {}).get(kind) or {}
    return float(row.get("temperature", 1.0)), float(row.get("bias", 0.0))


CARD_HEADING = "Calibration of the demo's confidences"


def card_text(result: dict) -> str:
    """The model card's section: the fitted scaling and the expected calibration error before and after."""
    rows = [f"| {kind} | {r['method']} | {r['temperature']:.3f} | {r['bias']:.3f} | {r['ece_test_before']:.3f} | "
            f"{r['ece_test_after']:.3f} |" for kind, r in result["kinds"].items()]  # fmt: skip
    return (
        "Each answer's confidence in the demo is the model's probability rescaled by a temperature and a bias "
        "(Platt scaling; a temperature alone where that scores better) fitted on the val split; the expected "
        f"calibration error ({result['bins']} bins) is measured on the test split "
        "(`python -m longvmnet.explain.calibration --data runs/recipe/data --cache runs/recipe/cache`).\n\n"
        "| kind | scaling | temperature | bias | calibration error before | after |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the confidence temperatures; write calibration.json.")
    parser.add_argument("--checkpoint", default=None, help="folder (default: the bundled checkpoint)")
    parser.add_argument("--data", required=True, help="the benchmark the checkpoint was trained on")
    parser.add_argument(
        "--cache", default=None, help="feature cache folder (runs/recipe/cache) to skip decoding"
    )
    parser.add_argument("--out", default=None, help=f"default: <checkpoint>/{FILE}")
    parser.add_argument(
        "--pairs", default=None, help="an .npz of the answered pairs: read if it exists, else written"
    )
    args = parser.parse_args(argv)

    from longvmnet.data.rest import ReSTData
    from longvmnet.explain.find import memories_for
    from longvmnet.hub import DEFAULT_CHECKPOINT, load_model

    folder = args.checkpoint or DEFAULT_CHECKPOINT
    model = load_model(folder).eval()
    began = time.perf_counter()
    result = fit(model, ReSTData(args.data), memories_for(model, args.cache), pairs_file=args.pairs)
    result["seconds"] = round(time.perf_counter() - began, 1)
    Path(args.out or Path(folder) / FILE).write_text(json.dumps(result, indent=1) + "\n")
    if args.out is None:
        from longvmnet.measure.report import set_card_section

        set_card_section(folder, CARD_HEADING, card_text(result))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
