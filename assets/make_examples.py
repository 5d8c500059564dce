"""Regenerate assets/examples/: one synthetic benchmark video, three object crops and suggested queries.

    python assets/make_examples.py [--minutes 10] [--seed 7] [--queries-only]

The video comes from the synthetic benchmark generator (longvmnet.data.synth.generate, docs/CONTRACTS.md);
the queries are three of the benchmark's own queries on it (activity, object, time), with their answers.
queries.json is what app.py reads: {"video", "duration", "source", "queries": [{"type", "label", "crop",
"activity", "start", "end", "answer"}]} with file names relative to this folder. A fourth query, "find",
searches the whole video for the object query's object; its answer lists the object's `appearances`, the
[start, end] s intervals in which it is in view (from the annotations). `--queries-only` rewrites
queries.json alone, after checking that the regenerated crops equal the ones here (same generator, same video).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "examples"
VIDEO = "kitchen.mp4"


def pick(queries: list[dict], kind: str) -> dict:
    """The first short-window query of a kind (shortest window available)."""
    order = {"short": 0, "medium": 1, "long": 2}
    return sorted(
        (q for q in queries if q["type"] == kind), key=lambda q: (order.get(q["window"], 9), q["id"])
    )[0]


def label(q: dict, categories: dict[str, str]) -> str:
    span = f"{q['start']:.0f}-{q['end']:.0f} s"
    obj = categories.get(q.get("object"), "object")
    if q["type"] == "activity":
        return f"activity: what is done to this {obj} in {span}?"
    if q["type"] == "object":
        return f"object: which object is '{q['activity']}' done to in {span}, and where?"
    return f"time: when is '{q['activity']}' done to this {obj} in {span}?"


def appearances(boxes: list, fps: float) -> list[list[float]]:
    """[start, end] s of the runs of frames with a box (the object in view)."""
    runs, first = [], None
    for f, box in enumerate([*boxes, None]):
        if box is not None and first is None:
            first = f
        elif box is None and first is not None:
            runs.append([round(first / fps, 1), round(f / fps, 1)])
            first = None
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crf", type=int, default=30, help="re-encode the video at this H.264 CRF (0: copy)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--queries-only", action="store_true", help="rewrite queries.json only")
    args = parser.parse_args(argv)

    from longvmnet.data.synth import FPS, generate, load_annotations, load_benchmark
    from longvmnet.video import iter_frames, write_video

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(tmp, videos=1, minutes=args.minutes, seed=args.seed)
        bench = load_benchmark(root)
        vid, entry = next(iter(bench["videos"].items()))
        ann = load_annotations(root, vid)
        categories = {oid: o["category"] for oid, o in ann["objects"].items()}
        queries = [q for q in bench["queries"] if q["video"] == vid]
        chosen = [pick(queries, kind) for kind in ("activity", "object", "time")]

        if args.queries_only:
            for q in chosen:
                if q.get("crop") and (args.out / f"crop_{q['type']}_{q['object']}.png").read_bytes() != (
                    Path(root) / q["crop"]
                ).read_bytes():
                    raise SystemExit("The generator makes other crops now: regenerate everything (no --queries-only).")
        elif args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.queries_only:
            pass
        elif args.crf:  # smaller file, same frames, times and keyframe pattern (one per second)
            frames = (f for _, f in iter_frames(Path(root) / entry["file"], FPS))
            write_video(args.out / VIDEO, frames, FPS, crf=args.crf, keyframe_interval=FPS)
        else:
            shutil.copyfile(Path(root) / entry["file"], args.out / VIDEO)
        out = []
        for q in chosen:
            crop = None
            if q.get("crop"):
                crop = f"crop_{q['type']}_{q['object']}.png"
                shutil.copyfile(Path(root) / q["crop"], args.out / crop)
            out.append(
                {
                    "type": q["type"],
                    "label": label(q, categories),
                    "crop": crop,
                    "activity": q.get("activity"),
                    "start": q["start"],
                    "end": q["end"],
                    "answer": q["answer"] | {"object": q["object"]},  # object answers keep their boxes
                }
            )
        # a third crop: the object of the object query, to ask activity or time queries about it
        obj = chosen[1]["object"]
        used = {q.get("crop") for q in chosen}
        extra = [c for c in ann["crops"].get(obj, []) if c["file"] not in used]
        if extra:
            name = f"crop_object_{obj}.png"
            if not args.queries_only:
                shutil.copyfile(Path(root) / extra[0]["file"], args.out / name)
            out.append(
                {
                    "type": "find",
                    "label": f"find: where does this {categories.get(obj, 'object')} appear?",
                    "crop": name,
                    "activity": None,
                    "start": 0.0,
                    "end": entry["duration"],
                    "answer": {"object": obj, "appearances": appearances(ann["objects"][obj]["boxes"], FPS)},
                }
            )
        spec = {
            "video": VIDEO,
            "duration": entry["duration"],
            "source": f"longvmnet.data.synth.generate(videos=1, minutes={args.minutes:g}, seed={args.seed}), {vid}",
            "queries": out,
        }
        text = json.dumps(spec, indent=1)  # lists of numbers (boxes, intervals) on one line each
        text = re.sub(r"\[\s+([-\d.,\s]+?)\s+\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
        (args.out / "queries.json").write_text(text + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(list(args.out.iterdir()))} files, {total / 2**20:.1f} MB, to {args.out}")


if __name__ == "__main__":
    main()
