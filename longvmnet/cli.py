"""The `longvmnet` command line. Answers go to stdout as JSON; errors to stderr as one sentence, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path



def _user_errors() -> tuple[type[Exception], ...]:
    from longvmnet.hub import CheckpointError
    from longvmnet.memory import MemoryFileError
    from longvmnet.queries import QueryError
    from longvmnet.video import VideoError

    return (CheckpointError, MemoryFileError, QueryError, VideoError, FileNotFoundError)


def cmd_build_memory(args) -> dict:
    from tqdm import tqdm

    from longvmnet.hub import load_model
    from longvmnet.inference import build_memory

    model = load_model(args.checkpoint)
    with tqdm(total=0, unit="frame", desc="scanning", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        memory = build_memory(model, args.video, progress=progress)
    path = memory.save(args.out)
    return {"memory": str(path), **asdict(memory.meta), "tokens": memory.size}


def cmd_ask(args) -> dict:
    from longvmnet.hub import load_model
    from longvmnet.inference import answer, load_crop
    from longvmnet.memory import Memory
    from longvmnet.queries import ActivityQuery, ObjectQuery, TimeQuery

    model = load_model(args.checkpoint)
    c = model.config
    memory = Memory.load(args.memory, expected_size=c.memory_size, expected_dim=c.d_model, checkpoint=model.fingerprint())
    end = memory.meta.duration_s if args.end is None else args.end
    if args.kind == "activity":
        query = ActivityQuery(load_crop(args.object), args.start, end)
    elif args.kind == "object":
        query = ObjectQuery(args.activity, args.start, end)
    else:
        query = TimeQuery(args.activity, load_crop(args.object), args.start, end)
    result = answer(model, memory, [query])[0]
    return asdict(result)


def cmd_generate(args) -> dict:
    from longvmnet.data.synth import generate

    root = generate(args.out, videos=args.videos, minutes=args.minutes, seed=args.seed)
    return {"benchmark": str(Path(root) / "benchmark.json")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longvmnet", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build-memory", help="stage 1: scan a video once into a memory file")
    b.add_argument("video")
    b.add_argument("--checkpoint", default=None, help="folder or Hub repo id (default: the bundled checkpoint)")
    b.add_argument("--out", required=True, help="memory file to write (.safetensors)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build_memory)

    a = sub.add_parser("ask", help="stage 2: answer a query from a memory file")
    a.add_argument("memory")
    a.add_argument("--checkpoint", default=None, help="the checkpoint that built the memory")
    kinds = a.add_subparsers(dest="kind", required=True)
    for kind, needs in (("activity", ("object",)), ("object", ("activity",)), ("time", ("activity", "object"))):
        k = kinds.add_parser(kind)
        if "activity" in needs:
            k.add_argument("--activity", required=True, help="activity class name")
        if "object" in needs:
            k.add_argument("--object", required=True, help="object crop image (PNG/JPEG)")
        k.add_argument("--start", type=float, default=0.0, help="seconds")
        k.add_argument("--end", type=float, default=None, help="seconds (default: the end of the video)")
    a.set_defaults(func=cmd_ask)

    g = sub.add_parser("generate", help="write a synthetic ReST-style long-video benchmark")
    g.add_argument("out")
    g.add_argument("--videos", type=int, default=10)
    g.add_argument("--minutes", type=float, default=30.0)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is not None:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
