"""The whole recipe behind the bundled checkpoint, one command, resumable stage by stage:

  generate data -> pretrain the backbone -> train Long-VMNet, the per-query baseline and the ablations
  -> evaluate on the held-out test videos -> memory-size sweep -> report and model card -> checkpoint.

    python -m longvmnet.recipe [--videos 7 --minutes 20 --steps 250] [--tiny]

Every stage writes its output under --work (default runs/recipe) and is skipped when that output exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from longvmnet.config import preset
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData
from longvmnet.evaluate import evaluate, format_table
from longvmnet.hub import load_model
from longvmnet.model import LongVMNet
from longvmnet.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name -> (train config changes, model config changes)
    "longvmnet": ({}, {}),
    "baseline": ({"method": "baseline", "continual": 0}, {}),
    "no_continual": ({"continual": 0}, {}),
    "random_memory": ({}, {"selection": "random"}),
}


def stage(name: str, done: Path):
    def wrap(fn):
        def run(*args, **kwargs):
            if done.exists():
                print(f"[recipe] {name}: done already ({done})")
                return
            t = time.perf_counter()
            print(f"[recipe] {name} ...")
            fn(*args, **kwargs)
            print(f"[recipe] {name}: {time.perf_counter() - t:.0f} s")

        return run

    return wrap


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m longvmnet.recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--work", default=str(ROOT / "runs" / "recipe"))
    p.add_argument("--videos", type=int, default=7)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--steps", type=int, default=250, help="training steps of every variant (same budget)")
    p.add_argument("--variants", default="longvmnet,baseline,no_continual", help=f"of {','.join(VARIANTS)}")
    p.add_argument("--sweep", default="4,8,16,32", help="memory sizes in frames' worth of tokens")
    p.add_argument("--preset", default="synth")
    p.add_argument("--out", default=str(ROOT / "checkpoints" / "longvmnet-synth"))
    p.add_argument("--tiny", action="store_true", help="seconds-fast settings for tests")
    args = p.parse_args(argv)
    if args.tiny:
        args.videos, args.minutes, args.pretrain_steps, args.steps, args.sweep = 3, 1.0, 3, 3, "2,4"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    data_dir = work / "data"
    split = (0.6, 0.15, 0.25)

    @stage("generate data", data_dir / "benchmark.json")
    def generate_data():
        from longvmnet.data.synth import generate

        generate(data_dir, videos=args.videos, minutes=args.minutes, seed=args.seed, split=split)

    generate_data()
    data = ReSTData(data_dir)
    config = preset(args.preset, activities=list(data.activities))
    if args.tiny:
        config = preset("tiny", activities=list(data.activities))

    @stage("pretrain backbone", work / "backbone" / "model.safetensors")
    def pretrain():
        from longvmnet.pretrain import pretrain_backbone

        model = LongVMNet(config)
        losses = pretrain_backbone(model, data, steps=args.pretrain_steps)
        model.save_pretrained(work / "backbone")
        (work / "backbone" / "losses.json").write_text(json.dumps(losses))

    pretrain()
    base = load_model(work / "backbone")
    cache = FeatureCache(work / "cache", base)
    variants = [v for v in args.variants.split(",") if v]
    for name in variants:
        train_changes, model_changes = VARIANTS[name]

        @stage(f"train {name}", work / name / "model.safetensors")
        def train_variant(name=name, train_changes=train_changes, model_changes=model_changes):
            torch.manual_seed(args.seed)
            model = LongVMNet(replace(base.config, **model_changes))
            model.backbone.load_state_dict(base.backbone.state_dict())
            cfg = TrainConfig(max_steps=args.steps, epochs=10**6, seed=args.seed, **train_changes)
            Trainer(model, data, cache, cfg, work / name).run()

        train_variant()

    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def record(key: str, fn):
        if key not in results:
            print(f"[recipe] evaluate {key} ...")
            results[key] = fn()
            print(format_table(results[key]))
            results_path.write_text(json.dumps(results, indent=2))

    main_model = lambda: load_model(work / "longvmnet")  # noqa: E731
    record("longvmnet", lambda: evaluate(main_model(), data, "test", method="longvmnet"))
    if "baseline" in variants:
        record(
            "baseline",
            lambda: evaluate(load_model(work / "baseline"), data, "test", method="baseline", cache=cache),
        )
    if "no_continual" in variants:
        record("no_continual", lambda: evaluate(load_model(work / "no_continual"), data, "test",
                                                method="longvmnet-cached", cache=cache))  # fmt: skip
    # random memory tokens: a model trained with random selection when that variant was trained, otherwise
    # the Long-VMNet model with its sampler swapped for random scores at inference (said in the report)
    random_model = work / ("random_memory" if "random_memory" in variants else "longvmnet")
    record(
        "random_memory",
        lambda: evaluate(load_model(random_model), data, "test", method="random", cache=cache),
    )
    record("uniform_frames", lambda: evaluate(main_model(), data, "test", method="uniform", cache=cache))
    for frames in [int(x) for x in args.sweep.split(",") if x]:
        record(f"sweep_{frames}", lambda f=frames: evaluate(main_model(), data, "test", method="longvmnet-cached",
                                                            cache=cache, memory_frames=f))  # fmt: skip
    from longvmnet.report import write_report

    write_report(work, results, data, base.config, args)
    out = Path(args.out)
    if not args.tiny or args.out != p.get_default("out"):
        out.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(work / "longvmnet" / f, out / f)
        shutil.copy(work / "MODEL_CARD.md", out / "README.md")
        if (work / "memory_sweep.png").exists():
            shutil.copy(work / "memory_sweep.png", out / "memory_sweep.png")
        print(f"[recipe] checkpoint written to {out}")
    return results


if __name__ == "__main__":
    main()
