"""The `longvmnet` command line. Answers go to stdout as JSON; errors to stderr as one sentence, exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def _user_errors() -> tuple[type[Exception], ...]:
    from longvmnet.hub import CheckpointError
    from longvmnet.measure.probe import ProbeError
    from longvmnet.memory import MemoryFileError
    from longvmnet.queries import QueryError
    from longvmnet.video import VideoError

    return (CheckpointError, MemoryFileError, ProbeError, QueryError, VideoError, FileNotFoundError)


def cmd_build_memory(args) -> dict | None:
    if Path(args.video).is_dir():
        return _build_corpus(args)
    from tqdm import tqdm

    from longvmnet.distributed import pick_device
    from longvmnet.hub import load_model
    from longvmnet.inference import build_memory

    model = load_model(args.checkpoint, device=pick_device(args.device))
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # created on the first clip, so an unreadable video prints no empty bar
            bar = tqdm(total=total, unit="frame", desc="scanning", disable=args.quiet)
        bar.total = total
        bar.update(done - bar.n)

    try:
        memory = build_memory(model, args.video, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    path = memory.save(args.out)
    return {"memory": str(path), **asdict(memory.meta), "tokens": memory.size}


def _build_corpus(args) -> dict | None:
    """build-memory over a folder: a memory per video and OUT/index.json; split across torchrun's ranks."""
    from longvmnet import distributed
    from longvmnet.corpus import build_corpus
    from longvmnet.hub import load_model

    with distributed.session(args.device) as world:
        model = load_model(args.checkpoint, device=world.device)
        return build_corpus(model, args.video, args.out, world=world, progress=not args.quiet)


def cmd_ask(args) -> dict:
    from longvmnet.hub import load_model
    from longvmnet.inference import answer, load_crop
    from longvmnet.memory import Memory
    from longvmnet.queries import ActivityQuery, ObjectQuery, TimeQuery

    model = load_model(args.checkpoint)
    c = model.config
    memory = Memory.load(args.memory, expected_size=c.memory_size, expected_dim=c.d_model,
                         expected_grid=c.grid, checkpoint=model.fingerprint())  # fmt: skip
    end = memory.meta.duration_s if args.end is None else args.end
    if args.kind == "activity":
        query = ActivityQuery(load_crop(args.object), args.start, end)
    elif args.kind == "object":
        query = ObjectQuery(args.activity, args.start, end)
    else:
        query = TimeQuery(args.activity, load_crop(args.object), args.start, end)
    return answer(model, memory, [query])[0].to_dict()


def cmd_generate(args) -> dict:
    from longvmnet.data.synth import generate

    root = generate(args.out, videos=args.videos, minutes=args.minutes, seed=args.seed)
    return {"benchmark": str(Path(root) / "benchmark.json")}


def cmd_benchmark_stats(args) -> dict:
    from longvmnet.data.stats import benchmark_stats, format_stats

    if not (Path(args.data) / "benchmark.json").is_file():
        raise FileNotFoundError(f"{Path(args.data) / 'benchmark.json'} does not exist")
    result = benchmark_stats(args.data)
    print(format_stats(result), file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def cmd_train(args) -> dict | None:
    import torch

    from longvmnet import distributed
    from longvmnet.config import preset
    from longvmnet.data.features import FeatureCache
    from longvmnet.data.rest import ReSTData
    from longvmnet.model import LongVMNet
    from longvmnet.train.trainer import TrainConfig, Trainer

    with distributed.session(args.device) as world:  # a process group under torchrun (WORLD_SIZE > 1)
        data = ReSTData(args.data)
        torch.manual_seed(args.seed)  # the same initial weights for a seed, whatever the number of ranks
        model = LongVMNet(preset(args.preset, activities=list(data.activities)))
        cfg = TrainConfig(epochs=args.epochs, max_steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                          continual=args.continual, method=args.method)  # fmt: skip
        cache = FeatureCache(args.cache or Path(args.data) / "cache", model)
        log = Trainer(model, data, cache, cfg, Path(args.out), world=world).run(resume=not args.restart)
    if not world.main:
        return None  # rank 0 answers for the run
    return {"checkpoint": args.out, "steps": len(log), "final_loss": log[-1]["loss"] if log else None}


def cmd_evaluate(args) -> dict:
    from longvmnet.data.features import FeatureCache
    from longvmnet.data.rest import ReSTData
    from longvmnet.hub import load_model
    from longvmnet.measure.evaluate import (
        LADDER,
        METHODS,
        NO_CACHE,
        NO_MODEL,
        evaluate,
        evaluate_ladder,
        format_ladder,
        format_table,
        save_json,
    )

    methods = list(LADDER) if args.method == "ladder" else [m for m in args.method.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SystemExit(f"Unknown method {', '.join(unknown) or '(none)'}; choose 'ladder' or a comma-separated "
                         f"list of: {', '.join(METHODS)}.")  # fmt: skip
    model = None if all(m in NO_MODEL for m in methods) else load_model(args.checkpoint)
    data = ReSTData(args.data)
    cache = (
        FeatureCache(args.cache or Path(args.data) / "cache", model)
        if any(m not in NO_CACHE for m in methods)
        else None
    )
    if len(methods) == 1:
        result = evaluate(
            model, data, args.split, method=methods[0], cache=cache, memory_frames=args.memory_frames
        )
        print(format_table(result), file=sys.stderr)
    else:
        if args.memory_frames:
            raise SystemExit("--memory-frames applies to one method at a time; pass --method too.")
        result = evaluate_ladder(model, data, args.split, methods=methods, cache=cache)
        print(format_ladder(result), file=sys.stderr)
    if args.json:
        save_json(result, args.json)
    return result


def cmd_probe(args) -> dict:
    from longvmnet.data.features import FeatureCache
    from longvmnet.data.rest import ReSTData
    from longvmnet.hub import load_model
    from longvmnet.measure.probe import probe_tokens

    data = ReSTData(args.data)
    if args.backbone:
        from longvmnet.measure.probe import backbone_model

        model = backbone_model(args.backbone, args.block, args.image_size, data.activities)
    else:
        model = load_model(args.checkpoint)
    # (benchmark, its videos) that fit the probes: the training split, and every video of each pool
    train_sets = [(data, data.split("train"))] + [
        (pool, pool.split("all")) for pool in map(ReSTData, args.pool)
    ]
    eval_data = ReSTData(args.eval_data) if args.eval_data else data
    scored = eval_data.split(args.split)
    cache = FeatureCache(args.cache or Path(args.data) / "cache", model)
    train = [v for _, videos in train_sets for v in videos]
    result = probe_tokens(model, cache, train, scored, motion=args.motion, steps=args.steps, seed=args.seed)
    if args.readers:
        from longvmnet.measure.readers import probe_readers

        result["readers"] = probe_readers(model, cache, train_sets, (eval_data, scored), steps=args.steps,
                                          seed=args.seed)  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def cmd_bench(args) -> dict:
    from longvmnet.measure.bench import format_bench, run_bench

    result = run_bench(args.checkpoint, quick=args.quick, smallest=args.smallest, work=args.work)
    print(format_bench(result), file=sys.stderr)
    if args.card:
        from longvmnet.measure.bench import card_section
        from longvmnet.measure.report import set_card_section

        if not set_card_section(result["checkpoint"], "Speed", card_section(result)):
            raise FileNotFoundError(
                f"{Path(result['checkpoint']) / 'README.md'} (the model card) does not exist"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longvmnet", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build-memory", help="stage 1: scan a video (or a folder of videos) into memory files")
    b.add_argument("video", help="a video file, or a folder: every video under it, resumably (index.json)")
    b.add_argument(
        "--checkpoint", default=None, help="folder or Hub repo id (default: the bundled checkpoint)"
    )
    b.add_argument("--out", required=True, help="memory file to write (.safetensors); for a folder, a folder")
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the model runs (auto: CUDA when present; under torchrun, the rank's GPU)")  # fmt: skip
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build_memory)

    a = sub.add_parser("ask", help="stage 2: answer a query from a memory file")
    a.add_argument("memory")
    a.add_argument("--checkpoint", default=None, help="the checkpoint that built the memory")
    kinds = a.add_subparsers(dest="kind", required=True)
    for kind, needs in (
        ("activity", ("object",)),
        ("object", ("activity",)),
        ("time", ("activity", "object")),
    ):
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

    st = sub.add_parser("benchmark-stats", help="what a benchmark asks: object scale, durations, queries")
    st.add_argument("data", help="benchmark folder")
    st.add_argument("--json", default=None, help="write the figures as JSON here")
    st.set_defaults(func=cmd_benchmark_stats)

    t = sub.add_parser("train", help="train Long-VMNet (or the per-query baseline); also under torchrun")
    t.add_argument("--data", required=True, help="benchmark folder (longvmnet generate)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--preset", default="lite")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    t.add_argument(
        "--batch-size", type=int, default=6, help="videos per step (under torchrun: over all ranks)"
    )
    t.add_argument("--continual", type=int, default=2, help="past queries in the continual loss (0: off)")
    t.add_argument("--method", choices=["longvmnet", "baseline"], default="longvmnet")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache", default=None, help="feature cache folder (default: DATA/cache)")
    t.add_argument("--restart", action="store_true", help="ignore a saved training state")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where training runs (auto: CUDA when present; under torchrun, the rank's GPU)")  # fmt: skip
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="Table 2 of the paper for the accuracy ladder on a benchmark split")
    e.add_argument("--checkpoint", default=None)
    e.add_argument("--data", required=True)
    e.add_argument("--split", choices=["train", "val", "test", "all"], default="test")
    e.add_argument("--method", default="ladder",
                   help="'ladder' (prior, blind, oracle, baseline, longvmnet, random, uniform on the same queries) "
                        "or a comma-separated list of those and longvmnet-cached")  # fmt: skip
    e.add_argument(
        "--memory-frames", type=int, default=None, help="resize the memory (frames' worth of tokens)"
    )
    e.add_argument("--cache", default=None)
    e.add_argument("--json", default=None, help="write the table as JSON here")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("probe", help="what the tokens a memory holds tell: hand and activity probes")
    r.add_argument("--checkpoint", default=None)
    r.add_argument(
        "--backbone",
        default=None,
        help="probe this ImageNet backbone's own tokens instead of a checkpoint's (tf_efficientnet_lite0-2)",
    )
    r.add_argument(
        "--block", type=int, default=4, help="with --backbone: feature block (4: stride 32, 3: stride 16)"
    )
    r.add_argument("--image-size", type=int, default=224, help="with --backbone: frame side in pixels")
    r.add_argument("--data", required=True, help="benchmark whose training videos fit the probes")
    r.add_argument("--pool", action="append", default=[], help="another benchmark whose videos all fit too")
    r.add_argument("--eval-data", default=None, help="benchmark whose videos are scored (default: --data)")
    r.add_argument("--split", choices=["train", "val", "test", "all"], default="test")
    r.add_argument("--motion", type=int, default=0, help="add each patch's change over this many frames")
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--readers",
        action="store_true",
        help="also: can readers of the memory tokens in an activity query's window name its activities "
        "(annotated acting tokens, every token, the pointer's; measure/readers.py)",
    )
    r.add_argument("--cache", default=None, help="feature cache folder (default: DATA/cache)")
    r.add_argument("--json", default=None, help="write the result as JSON here")
    r.set_defaults(func=cmd_probe)

    s = sub.add_parser("bench", help="speed: the two stages against the per-query baseline, memory, latency")
    s.add_argument("--checkpoint", default=None)
    s.add_argument("--quick", action="store_true", help="a few minutes instead of the full run")
    s.add_argument("--smallest", action="store_true", help="the smallest setting (used by the tests)")
    s.add_argument("--work", default="runs/bench", help="folder for generated videos and caches")
    s.add_argument("--json", default=None, help="write the results as JSON here")
    s.add_argument("--card", action="store_true", help="also write them into the checkpoint's model card")
    s.set_defaults(func=cmd_bench)
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
