"""Regenerate assets/examples/: one synthetic benchmark video, three object crops and suggested queries.

    python assets/make_examples.py [--minutes 10] [--seed 7]

The video comes from the synthetic benchmark generator (longvmnet.data.synth.generate, docs/CONTRACTS.md);
the queries are three of the benchmark's own queries on it (activity, object, time), with their answers.
queries.json is what app.py reads: {"video", "duration", "source", "queries": [{"type", "label", "crop",
"activity", "start", "end", "answer"}]} with file names relative to this folder.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crf", type=int, default=30, help="re-encode the video at this H.264 CRF (0: copy)")
    parser.add_argument("--out", type=Path, default=OUT)
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

        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        if args.crf:  # smaller file, same frames, times and keyframe pattern (one per second)
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
                    "answer": {k: v for k, v in q["answer"].items() if k != "boxes"}
                    | {"object": q["object"]},
                }
            )
        # a third crop: the object of the object query, to ask activity or time queries about it
        obj = chosen[1]["object"]
        used = {q.get("crop") for q in chosen}
        extra = [c for c in ann["crops"].get(obj, []) if c["file"] not in used]
        if extra:
            shutil.copyfile(Path(root) / extra[0]["file"], args.out / f"crop_object_{obj}.png")
        spec = {
            "video": VIDEO,
            "duration": entry["duration"],
            "source": f"longvmnet.data.synth.generate(videos=1, minutes={args.minutes:g}, seed={args.seed}), {vid}",
            "queries": out,
        }
        (args.out / "queries.json").write_text(json.dumps(spec, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(list(args.out.iterdir()))} files, {total / 2**20:.1f} MB, to {args.out}")


if __name__ == "__main__":
    main()
