"""The training loop: loss decreases, the continual loss is present, the same-video rule holds, resume works."""

import random
from collections import defaultdict

import numpy as np
import pytest
import torch

from longvmnet.config import preset
from longvmnet.data.features import FeatureCache
from longvmnet.data.rest import ReSTData, video_batches
from longvmnet.model import LongVMNet
from longvmnet.train.inputs import RowRandom
from longvmnet.train.trainer import TrainConfig, Trainer


def make_trainer(bench, tmp_path, **cfg):
    torch.manual_seed(0)
    data = ReSTData(bench)
    model = LongVMNet(preset("tiny", activities=list(data.activities)))
    cache = FeatureCache(tmp_path / "cache", model)
    return Trainer(model, data, cache, TrainConfig(**cfg), tmp_path / "out")


def test_batches_never_hold_two_queries_of_one_video(tiny_benchmark):
    data = ReSTData(tiny_benchmark)
    videos = data.split("all")
    seen = []
    for batch in video_batches(videos, 2, random.Random(0)):
        ids = [v.id for v, _ in batch]
        assert len(ids) == len(set(ids))
        seen += [q["id"] for _, q in batch]
    assert sorted(seen) == sorted(q["id"] for v in videos for q in v.queries)  # each query once per epoch


def test_loss_decreases_on_a_fixed_batch(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, continual=0, token_dropout=0.0, lr=3e-3, lr_sampler=3e-3)
    tr.prepare(progress=False)
    tr.model.train()
    batch = next(video_batches(tr.videos, 2, random.Random(0)))
    losses = []
    for _ in range(25):  # the same inputs every step (clip, noise, windows): only the weights change
        torch.manual_seed(0)
        random.seed(0)
        losses.append(tr.train_step(batch, {}, defaultdict(list))["loss"])
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_continual_loss_answers_past_queries(tiny_benchmark, tmp_path):
    for p, expected in ((2, [1, 2, 3, 3]), (0, [1, 1, 1, 1])):
        tr = make_trainer(tiny_benchmark, tmp_path / str(p), continual=p)
        tr.prepare(progress=False)
        tr.model.train()
        video = tr.videos[0]
        bank, history = {}, defaultdict(list)
        answered = [tr.train_step([(video, q)], bank, history)["answered"] for q in video.queries[:4]]
        assert answered == expected
        assert bank[video.id][0].shape == (tr.model.config.memory_size,)


@pytest.mark.parametrize("method", ["longvmnet", "decoder"])  # memory banks / full-scan memories saved
def test_resume_continues_exactly(tiny_benchmark, tmp_path, method):
    # resumed on the cosine part of the schedule (past the warm-up), as long runs are
    run = {"epochs": 100, "batch_size": 2, "save_every": 2, "scan_every": 3, "warmup": 2, "method": method}
    full = make_trainer(tiny_benchmark, tmp_path / "full", max_steps=6, **run)
    full_log = full.run(progress=False)
    part = make_trainer(tiny_benchmark, tmp_path / "part", max_steps=6, **run)
    step = part.train_step

    def interrupted(*args):  # the run is killed after its state at step 4 was saved
        if part.step == 4:
            raise KeyboardInterrupt
        return step(*args)

    part.train_step = interrupted
    with pytest.raises(KeyboardInterrupt):
        part.run(progress=False)
    resumed = make_trainer(tiny_benchmark, tmp_path / "part", max_steps=6, **run)
    resumed_log = resumed.run(progress=False)
    assert [e["step"] for e in resumed_log] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in resumed_log] == pytest.approx([e["loss"] for e in full_log], rel=1e-4)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=5e-3) for k in a)  # Adam amplifies float noise
    assert (tmp_path / "part" / "out" / "model.safetensors").is_file()


def test_decoder_phase_trains_on_full_scan_memories_with_the_sampler_frozen(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, method="decoder", batch_size=5, max_steps=3, epochs=100,
                      scan_every=2)  # fmt: skip
    sampler = {k: v.clone() for k, v in tr.model.sampler.state_dict().items()}
    decoder = {k: v.clone() for k, v in tr.model.decoder.state_dict().items()}
    log = tr.run(progress=False)
    assert len(log) == 3 and all(e["loss"] == e["loss"] for e in log)
    epoch = [e for e in log if e["epoch"] == 0]  # every training query answered once in the first epoch
    assert sum(e["answered"] for e in epoch) == sum(len(v.queries) for v in tr.videos)
    assert "sampler_aux" not in log[0] and tr.scanned_at == 2  # rescanned after 2 steps
    assert all(torch.equal(sampler[k], v) for k, v in tr.model.sampler.state_dict().items())
    assert any(not torch.equal(decoder[k], v) for k, v in tr.model.decoder.state_dict().items())
    c = tr.model.config
    for video in tr.videos:  # every row answers from its video's full-scan memory
        frames, pos = tr.scans[video.id]
        assert len(frames) == len(pos) == c.memory_size
    batches = tr.batches(random.Random(0))  # queries of any videos, every query once an epoch
    assert sum(len(b) for b in batches) == sum(len(v.queries) for v in tr.videos)
    assert any(len({v.id for v, _ in b}) < len(b) for b in batches)


def test_baseline_trains(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, method="baseline", continual=0, max_steps=3, epochs=100)
    log = tr.run(progress=False)
    assert len(log) == 3 and all(e["loss"] == e["loss"] for e in log)


def test_token_relevance_marks_the_acting_object_and_hand_during_segments():
    from longvmnet.data.rest import patch_activities, token_relevance

    n = 10 * 5  # 10 s at 5 fps
    box = [0.0, 0.0, 0.45, 0.45]  # the top-left 2 x 2 patches of a 4 x 4 grid
    ann = {
        "fps": 5,
        "objects": {"cup": {"boxes": [box] * n}, "pan": {"boxes": [[0.5, 0.5, 1.0, 1.0]] * n}},
        "actor": {"boxes": [None] * 15 + [[0.76, 0.0, 0.99, 0.2]] * (n - 15)},
        "segments": [{"activity": "stir", "object": "cup", "start": 2.0, "end": 4.0}],
    }
    rel = token_relevance(ann, times=np.arange(10.0), grid=4).reshape(10, 4, 4)
    assert not rel[[0, 1, 5, 6, 7, 8, 9]].any()  # outside the segment: nothing, the pan never counts
    assert rel[2, :2, :2].all() and rel[2].sum() == 4  # at 2 s: the cup only (no hand yet)
    assert rel[3, :2, :2].all() and rel[3, 0, 3] and rel[3].sum() == 5  # at 3 s: the cup and the hand
    acts = patch_activities(ann, np.arange(10.0), 4, ["pour", "stir"]).reshape(10, 4, 4)
    assert np.array_equal(acts > 0, rel) and set(np.unique(acts)) == {0, 2}  # 1 + index of "stir"


def test_sampler_target_is_trained_only_with_a_neural_sampler(tiny_benchmark, tmp_path):
    for name, cfg, selection, expected in (
        ("on", {}, "neural", True),
        ("off", {"sampler_aux": 0.0}, "neural", False),
        ("random", {}, "random", False),
    ):
        tr = make_trainer(tiny_benchmark, tmp_path / name, **cfg)
        tr.model.config.selection = selection
        tr.prepare(progress=False)
        tr.model.train()
        assert any(r.any() for r in tr.inputs.relevance.values())  # the tiny videos have activities to keep
        batch = next(video_batches(tr.videos, 2, random.Random(0)))
        logs = tr.train_step(batch, {}, defaultdict(list))
        assert ("sampler_aux" in logs) == expected
        if expected:
            assert logs["sampler_aux"] > 0


def test_query_token_targets_mark_the_answer_object_and_hand_inside_the_answer():
    from longvmnet.data.rest import query_token_targets

    n = 10 * 5
    ann = {
        "fps": 5,
        "objects": {
            "cup": {"boxes": [[0.0, 0.0, 0.45, 0.45]] * n},
            "pan": {"boxes": [[0.5, 0.5, 1.0, 1.0]] * n},
        },
        "actor": {"boxes": [[0.76, 0.0, 0.99, 0.2]] * n},
    }
    q = {"type": "time", "object": "cup", "answer": {"start": 2.0, "end": 4.0}}
    times = np.array([1.0, 3.0, 3.0, 3.0, 3.0, 6.0])
    pos = np.array([0, 0, 3, 15, 5, 0])  # 4 x 4 grid: cup at 0 and 5, hand at 3, pan at 15
    hits = query_token_targets(ann, q, times, pos, grid=4)
    assert hits.tolist() == [False, True, True, False, True, False]
    # an activity query: the object's segments inside the window, not the window's other seconds
    ann["segments"] = [{"activity": "pour", "object": "cup", "start": 2.0, "end": 4.0},
                       {"activity": "stir", "object": "pan", "start": 5.0, "end": 7.0}]  # fmt: skip
    q = {"type": "activity", "object": "cup", "start": 0.0, "end": 10.0, "answer": {"activities": ["pour"]}}
    assert query_token_targets(ann, q, times, pos, grid=4).tolist() == [False, True, True, False, True, False]
    q["start"] = 3.5  # the segment clipped to the window
    assert not query_token_targets(ann, q, times, pos, grid=4).any()


def test_pointer_targets_train_object_and_time_queries(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, continual=0)
    tr.prepare(progress=False)
    tr.model.train()
    by_kind = {}
    for video in tr.videos:
        for q in video.queries:
            by_kind.setdefault(q["type"], (video, q))
    logs = tr.train_step([by_kind["time"]], {}, defaultdict(list))
    assert logs["pointer"] > 0 and logs["inside"] > 0
    logs = tr.train_step([by_kind["object"]], {}, defaultdict(list))
    assert logs["pointer"] > 0 and "inside" not in logs
    assert "pointer" not in tr.train_step([by_kind["activity"]], {}, defaultdict(list))
    tr.cfg.activity_pointer = True  # the pointer's target on activity queries too
    assert tr.train_step([by_kind["activity"]], {}, defaultdict(list))["pointer"] > 0


def test_decoder_phase_answers_from_the_full_scan_memory(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, method="decoder")
    tr.prepare(progress=False)
    tr.rescan()
    m, g = tr.model.config.memory_size, tr.model.config.grid
    assert all(f.shape == (m,) and p.shape == (m,) for f, p in tr.scans.values())
    video = tr.videos[0]
    f, pos = tr.scans[video.id]
    rows = [(video, video.queries[0])]
    memory = tr.inputs.scanned_memory(rows, tr.scans, RowRandom(0, 0))
    assert torch.equal(memory["times"][0], torch.from_numpy(tr.inputs.feats[video.id].times[f]).float())
    assert torch.equal(memory["rows"][0] * g + memory["cols"][0], torch.from_numpy(pos))
    tr.model.eval()  # no token dropout: the tokens are the scanned tokens, projected
    raw = torch.from_numpy(np.asarray(tr.inputs.feats[video.id].tokens[f, pos], dtype=np.float32))
    assert torch.allclose(
        tr.inputs.scanned_memory(rows, tr.scans, RowRandom(0, 0))["tokens"][0], tr.model.project(raw)
    )


def test_learning_rate_warms_up_then_decays_to_its_floor(tiny_benchmark, tmp_path):
    tr = make_trainer(tiny_benchmark, tmp_path, warmup=10, lr_floor=0.1, lr=1e-3, lr_sampler=2e-3)
    rates = {}
    for step in (0, 9, 60, 110):
        tr.step = step
        tr.set_lr(total=110)
        rates[step] = [g["lr"] for g in tr.opt.param_groups]
    assert rates[0] == pytest.approx([2e-4, 1e-4]) and rates[9] == pytest.approx([2e-3, 1e-3])
    assert rates[60] == pytest.approx([1.1e-3, 0.55e-3]) and rates[110] == pytest.approx([2e-4, 1e-4])


def test_validation_keeps_the_best_model_and_plots_the_curves(tiny_benchmark, tmp_path, monkeypatch):
    """Validated every 2 steps with scores 10, 30, 20: the saved model is the one of step 4, not the last."""
    import longvmnet.measure.evaluate

    scores = iter([10.0, 30.0, 20.0])
    snapshots = {}

    def fake_evaluate(model, data, split, **kwargs):
        snapshots[tr.step] = {k: v.clone() for k, v in model.state_dict().items()}
        s = next(scores)
        return {"table": {"activity": {"short": s}, "object": {"short": s}, "time": {"short": s}}}

    monkeypatch.setattr(longvmnet.measure.evaluate, "evaluate", fake_evaluate)
    monkeypatch.setattr(Trainer, "has_val", lambda self: True)
    tr = make_trainer(tiny_benchmark, tmp_path, epochs=100, batch_size=2, max_steps=6, val_every=2, warmup=2)
    tr.run(progress=False)
    assert [v["step"] for v in tr.val_log] == [2, 4, 6] and [v["score"] for v in tr.val_log] == [10, 30, 20]
    saved = LongVMNet.from_pretrained(str(tmp_path / "out")).state_dict()
    assert all(torch.equal(saved[k], snapshots[4][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[6][k]) for k in saved)
    log = __import__("json").loads((tmp_path / "out" / "train_log.json").read_text())
    assert log["best_step"] == 4 and len(log["validation"]) == 3
    assert (tmp_path / "out" / "loss_curves.png").stat().st_size > 5000


def test_reader_phase_fits_the_window_reader_on_the_training_queries(tiny_benchmark, tmp_path):
    """The reader phase: features of every training activity query on the model's own memories, the head's
    logits beside them; the fit lowers the loss of head + reader and leaves every other weight as it was."""
    from longvmnet.train.reader import fit_reader, reader_inputs

    torch.manual_seed(0)
    data = ReSTData(tiny_benchmark)
    model = LongVMNet(preset("tiny", activities=list(data.activities))).eval()
    cache = FeatureCache(tmp_path / "cache", model)
    videos = data.split("train")
    inputs = reader_inputs(model, cache, data, videos, progress=False)
    n = sum(q["type"] == "activity" for v in videos for q in v.queries)
    assert len(inputs["features"]) == len(inputs["logits"]) == len(inputs["answers"]) == n > 0
    assert torch.equal(inputs["answers"].sum(1) > 0, torch.ones(n, dtype=torch.bool))
    segments = sum(len(v.annotations["segments"]) for v in videos)
    assert inputs["segment_features"].shape[1] == 5 * model.config.d_model + 1
    targets = inputs["segment_targets"]  # each segment 9 times (jittered), then spans touching none
    assert torch.equal(targets.sum(1), torch.ones(len(targets))) and targets[:, :-1].sum() == 9 * segments
    readers = ("reader.", "segment_reader.")
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(readers)}
    fingerprint = model.fingerprint()
    losses = fit_reader(model, inputs, steps=300, lr=3e-3, progress=False)
    assert losses[-1] < 0.8 * losses[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in others.items())
    assert model.fingerprint() != fingerprint  # memories written before the fit are not this model's
    assert torch.allclose(model.reader.mean, inputs["features"].mean(0))
    assert torch.allclose(model.segment_reader.mean, inputs["segment_features"].mean(0))


def test_reader_phase_command_writes_a_checkpoint_with_the_fit_reader(
    tiny_benchmark, tiny_checkpoint, tmp_path
):
    import json

    from longvmnet.hub import load_model
    from longvmnet.train.reader import main

    out = tmp_path / "with_reader"
    main(["--checkpoint", str(tiny_checkpoint), "--data", str(tiny_benchmark), "--cache", str(tmp_path / "cache"),
          "--out", str(out), "--steps", "20"])  # fmt: skip
    before, after = load_model(tiny_checkpoint), load_model(out)
    saved = json.loads((tiny_checkpoint / "config.json").read_text())
    assert json.loads((out / "config.json").read_text()) == saved | {"window_reader": True}  # as trained
    assert not torch.equal(after.reader.mean, before.reader.mean)  # fit: the features' standardisation
    weights = {
        k: v for k, v in after.state_dict().items() if not k.startswith(("reader.", "segment_reader."))
    }
    assert all(torch.equal(v, before.state_dict()[k]) for k, v in weights.items())
    with pytest.raises(SystemExit, match="does not exist"):  # one sentence, no traceback
        main(["--checkpoint", str(tmp_path / "missing"), "--data", str(tiny_benchmark)])
