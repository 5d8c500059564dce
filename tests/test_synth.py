"""The synthetic benchmark: determinism, boxes against decoded pixels, query constraints, crops, labels,
places, and activities that change how the object looks."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from longvmnet.data import activities, synth
from longvmnet.data import scene as sc
from longvmnet.data.benchmark import (
    assign_splits,
    check_query,
    load_annotations,
    load_benchmark,
    patch_labels,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """Two rendered 40-second videos."""
    return synth.generate(
        tmp_path_factory.mktemp("bench") / "b", videos=2, minutes=40 / 60, seed=0, progress=False
    )


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """Ten 16-minute videos, annotations only (no rendering): activities last tens of seconds to minutes."""
    root = tmp_path_factory.mktemp("big") / "b"
    return synth.generate(root, videos=10, minutes=16, seed=0, progress=False, render=False)


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_layout_and_schema(bench):
    b = load_benchmark(bench)
    assert (b["fps"], b["width"], b["height"]) == (5, 224, 224)
    assert b["activities"] == list(activities.ACTIVITIES) and len(b["categories"]) >= 6
    for vid, entry in b["videos"].items():
        ann = load_annotations(bench, vid)
        n = round(entry["duration"] * 5)
        assert (bench / entry["file"]).is_file() and entry["split"] in ("train", "val", "test")
        places = ann["places"]  # 2 places in a short video, each with 4-8 objects (3-7 once one is taken)
        assert len({p["place"] for p in places}) == 2 and 8 <= len(ann["objects"]) <= 16
        assert all(a["end"] <= b["start"] for a, b in zip(places, places[1:]))  # walks in between
        assert 0 <= places[0]["start"] and places[-1]["end"] <= entry["duration"]
        assert all(len(o["boxes"]) == n for o in ann["objects"].values()) and len(ann["actor"]["boxes"]) == n
        for obj, crops in ann["crops"].items():
            assert crops, obj
            for crop in crops:
                assert (bench / crop["file"]).is_file()
                segs = [s for s in ann["segments"] if s["object"] == obj]
                assert not any(s["start"] <= crop["time"] <= s["end"] for s in segs)


def test_video_has_a_keyframe_every_second(bench):
    entry = load_benchmark(bench)["videos"]["vid_000"]
    with av.open(str(bench / entry["file"])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (224, 224)
        assert stream.codec_context.pix_fmt == "yuv420p" and stream.average_rate == 5
        keys = [float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe]
    assert keys == [float(t) for t in range(int(entry["duration"]))]


def test_same_seed_same_bytes_other_seed_differs(tmp_path, bench):
    a = synth.generate(tmp_path / "a", videos=2, minutes=40 / 60, seed=0, progress=False, render=False)
    c = synth.generate(tmp_path / "c", videos=2, minutes=40 / 60, seed=1, progress=False, render=False)
    for name in ("benchmark.json", "annotations/vid_000.json", "annotations/vid_001.json"):
        assert (a / name).read_bytes() == (bench / name).read_bytes()  # rendering changes nothing
        assert (c / name).read_bytes() != (a / name).read_bytes()
    one, two = synth.build_video("v", 0, 0, 20.0), synth.build_video("v", 0, 0, 20.0)
    for f in range(0, 100, 7):
        assert np.array_equal(
            sc.render_frame(one.scene, one.timeline, f), sc.render_frame(two.scene, two.timeline, f)
        )


def test_extend_adds_training_videos_and_keeps_the_rest(tmp_path, bench):
    import shutil

    root = tmp_path / "x"
    shutil.copytree(bench, root)
    before = json.loads((bench / "benchmark.json").read_text())
    synth.extend(root, videos=1, progress=False)
    after = json.loads((root / "benchmark.json").read_text())
    assert {k: v for k, v in after["videos"].items() if k != "vid_002"} == before["videos"]
    assert after["queries"][: len(before["queries"])] == before["queries"]
    assert after["videos"]["vid_002"]["split"] == "train"
    assert {q["video"] for q in after["queries"][len(before["queries"]) :]} == {"vid_002"}
    # the added video is the one a 3-video benchmark of the same seed has, rendered as a real file
    three = synth.generate(
        tmp_path / "three", videos=3, minutes=40 / 60, seed=0, progress=False, render=False
    )
    assert (root / "annotations/vid_002.json").read_bytes() == (
        three / "annotations/vid_002.json"
    ).read_bytes()
    assert len(_decode(root / after["videos"]["vid_002"]["file"])) == 40 * synth.FPS


def test_boxes_cover_drawn_pixels(bench):
    """Every annotated box (objects and hand) differs from a background-only render in the decoded video."""
    checked = 0
    for vid in ("vid_000", "vid_001"):
        ann = load_annotations(bench, vid)
        spec = synth.build_video(vid, 0, int(vid[-1]), ann["duration"])
        frames = _decode(bench / "videos" / f"{vid}.mp4")
        assert len(frames) == len(ann["actor"]["boxes"])
        tracks = [o["boxes"] for o in ann["objects"].values()] + [b for k, b in ann["actor"].items()]
        for f in range(0, len(frames), 9):
            if not np.isnan(spec.timeline.shadow[f]):  # a passing shadow darkens object and background alike
                continue
            empty = sc.render_frame(spec.scene, spec.timeline, f, foreground=False).astype(int)
            diff = np.abs(frames[f].astype(int) - empty).max(axis=2)
            for boxes in tracks:
                if boxes[f] is None:
                    continue
                x1, y1, x2, y2 = (int(round(v * 224)) for v in boxes[f])
                region = diff[y1:y2, x1:x2]
                assert region.size and (region > 30).mean() > 0.3, (vid, f, boxes[f])
                checked += 1
    assert checked > 120  # 3-7 objects in view (v1: 8-11)


def test_queries_meet_the_contract(bench, big):
    for root in (bench, big):
        b = load_benchmark(root)
        for vid in b["videos"]:
            ann = load_annotations(root, vid)
            queries = [q for q in b["queries"] if q["video"] == vid]
            assert {q["type"] for q in queries} == {"activity", "object", "time"} or root == bench
            for q in queries:
                check_query(q, ann, b["activities"])
                assert 0 <= q["start"] <= q["end"] <= ann["duration"]
                if q["type"] != "activity":
                    assert q["start"] <= q["answer"]["start"] <= q["answer"]["end"] <= q["end"]
                if q["type"] == "object":
                    boxes = ann["objects"][q["object"]]["boxes"]
                    assert q["answer"]["boxes"] and all(
                        boxes[round(float(t) * 5)] == box and f"{float(t):.1f}" == t
                        for t, box in q["answer"]["boxes"].items()
                    )
    ids = [q["id"] for q in load_benchmark(big)["queries"]]
    assert len(ids) == len(set(ids)) and len(ids) > 10 * 40


def test_every_activity_class_appears(big):
    b = load_benchmark(big)
    segs = [s for vid in b["videos"] for s in load_annotations(big, vid)["segments"]]
    assert {s["activity"] for s in segs} == set(activities.ACTIVITIES)
    for kind in ("object", "time"):
        assert {q["activity"] for q in b["queries"] if q["type"] == kind} == set(activities.ACTIVITIES)
    cover = sum(s["end"] - s["start"] for s in segs) / sum(v["duration"] for v in b["videos"].values())
    assert 0.1 < cover < 0.3  # sparse in time
    assert all(10 <= s["end"] - s["start"] <= 300 for s in segs)
    assert np.median([s["end"] - s["start"] for s in segs]) >= 30  # like ADL: tens of seconds to minutes


def test_places_are_revisited_and_objects_move(big):
    b = load_benchmark(big)
    anns = [load_annotations(big, vid) for vid in b["videos"]]
    assert all(2 <= len({p["place"] for p in a["places"]}) <= 4 for a in anns)
    assert any(len(a["places"]) > len({p["place"] for p in a["places"]}) for a in anns)  # revisits
    moved = 0
    for a in anns:
        for obj in a["objects"].values():  # the places at which an object is seen resting
            seen = {p["place"] for p in a["places"] for f in range(int(p["start"]) * 5, int(p["end"]) * 5, 25)
                    if obj["boxes"][f] is not None}  # fmt: skip
            moved += len(seen) > 1
    assert moved >= 1


VISIBLE = ("open", "close", "pour", "wash", "stir", "shake", "push", "rotate")


def test_visible_classes_change_the_object_in_one_frame():
    """Mid-segment, the acting object drawn as it is differs from it drawn idle at the same place (no tilt,
    lid on, no effects, no hands) over a large part of its box for every class but pick up / put down."""
    changed = {}
    for index in range(12):  # until every class has been seen twice
        if all(len(changed.get(a, ())) >= 2 for a in activities.ACTIVITIES):
            break
        spec = synth.build_video("v", 5, index, 1800.0)
        tl = spec.timeline
        for seg in spec.segments:
            at = 0.7 if seg.activity == "put down" else 0.3  # the object is still in view (lifted, not gone)
            f, o = int((seg.start + at * (seg.end - seg.start)) * synth.FPS), seg.obj
            box = synth.object_boxes(spec.scene, tl, o)[f]
            if np.isnan(box[0]):
                continue
            tl.hvis[:, f] = False
            drawn = sc.render_frame(spec.scene, tl, f).astype(int)
            tl.angle[o, f], tl.attached[o, f], tl.effects[f] = 0, True, []
            idle = sc.render_frame(spec.scene, tl, f).astype(int)
            x1, y1, x2, y2 = (int(v) for v in box)
            diff = np.abs(drawn - idle).max(axis=2)[y1:y2, x1:x2]
            changed.setdefault(seg.activity, []).append(float((diff > 40).mean()))
    for act in ("pick up", "put down"):
        assert max(changed[act]) == 0.0, act  # motion only
    for act in VISIBLE:
        if act in changed:
            assert np.median(changed[act]) > 0.2, (act, changed[act])
    assert set(VISIBLE) <= set(changed)


def test_put_down_and_close_reverse_pick_up_and_open():
    rng = np.random.default_rng(0)
    scene = synth.build_scene(rng, 2)
    obj = next(o for o in scene.objects if o.lid is not None)
    for fwd, back in (("pick up", "put down"), ("open", "close")):
        kw = dict(obj=0, start=10, end=21, hand=0, side="left")
        a = activities.motion(activities.Segment(fwd, **kw), obj, 80.0, 120.0, (True, 0.0, 0.0), (20.0, 0.0))
        b = activities.motion(
            activities.Segment(back, **kw), obj, 80.0, 120.0, (False, 100.0, 100.0), (20.0, 0.0)
        )
        for key in ("ox", "oy", "lx", "ly", "gx", "gy", "attached"):
            assert np.array_equal(a[key][::-1], b[key]), (fwd, key)
        assert not np.array_equal(a["oy"], b["oy"]) or fwd == "open"  # order is the only cue


def test_patch_labels():
    n = 3
    ann = {
        "objects": {
            "a": {"category": "cup", "boxes": [[0.0, 0.0, 0.5, 0.95]] * n},
            "b": {"category": "pan", "boxes": [[0.3, 0.5, 1.0, 1.0], None, None]},
        },
        "actor": {"boxes": [[0.0, 0.0, 0.3, 0.3], None, None], "boxes_2": [None] * n},
    }
    lab = patch_labels(ann, 0)
    cup, pan = 2 + sc.CATEGORIES.index("cup"), 2 + sc.CATEGORIES.index("pan")
    assert lab.shape == (7, 7) and lab[0, 0] == 1 and lab[1, 1] == 1 and lab[2, 2] == cup  # hand wins
    assert lab[0, 2] == cup and lab[0, 6] == 0 and lab[6, 6] == pan and lab[6, 2] == pan  # front object wins
    assert (patch_labels(ann, 1)[:, 4:] == 0).all() and (patch_labels(ann, 1)[:, :3] == cup).all()
    assert patch_labels(ann, 2, grid=4).shape == (4, 4)


def test_patch_labels_on_generated_frames(bench):
    ann = load_annotations(bench, "vid_000")
    labels = np.stack([patch_labels(ann, f) for f in range(0, len(ann["actor"]["boxes"]), 10)])
    assert labels.min() >= 0 and labels.max() < 2 + len(sc.CATEGORIES)
    assert (labels >= 2).any() and (labels == 0).mean() > 0.3


def test_splits_by_video():
    rng = np.random.default_rng(0)
    for n, want in ((1, [1, 0, 0]), (2, [1, 0, 1]), (3, [1, 1, 1]), (10, [6, 2, 2])):
        got = assign_splits([f"v{i}" for i in range(n)], (0.6, 0.2, 0.2), rng)
        assert [list(got.values()).count(s) for s in ("train", "val", "test")] == want


def test_render_preview(bench, tmp_path):
    b = load_benchmark(bench)
    q = next(q for q in b["queries"] if q["type"] == "time" and q["video"] == "vid_000")
    times = [q["answer"]["start"], (q["answer"]["start"] + q["answer"]["end"]) / 2, q["answer"]["end"] - 0.2]
    out = synth.render_preview(bench, "vid_000", times, tmp_path / "p.png", query_id=q["id"])
    assert out.is_file() and 10_000 < out.stat().st_size < 400_000  # v2: larger textured objects
    assert json.loads((bench / "benchmark.json").read_text())["version"] == 2
