"""ADL annotation loader on fixture files in the dataset's published format, with and without a real video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from longvmnet.data import adl
from longvmnet.data.benchmark import check_query, load_annotations, load_benchmark

FIXTURES = Path(__file__).parent / "fixtures" / "adl"
NAMES = {13: "making coffee", 15: "drinking water/tap"}


def test_parse_time():
    assert (
        adl.parse_time("00:27") == 27 and adl.parse_time("1:02:03") == 3723 and adl.parse_time("12:05") == 725
    )
    assert adl.parse_time("42") == 42 and adl.parse_time(" 7.5 ") == 7.5
    for bad in ("", "1:2:3:4", "ab:cd", "-3"):
        with pytest.raises(ValueError):
            adl.parse_time(bad)


def test_read_files(tmp_path):
    rows = adl.read_object_annotations(FIXTURES / "object_annotation" / "object_annot_P_01.txt")
    assert len(rows) == 123 and {r.label for r in rows} == {"mug/cup", "kettle", "tap", "tv"}
    cup = [r for r in rows if r.track == 0]
    assert cup[0].box == (100, 300, 180, 400) and cup[6].frame == 180 and cup[6].active and not cup[5].active
    actions = adl.read_action_annotations(FIXTURES / "action_annotation" / "P_01.txt", NAMES)
    assert actions == [
        (5.0, 12.0, "making coffee"), (20.0, 26.0, "drinking water/tap"), (30.0, 33.0, "action_5"),
        (35.0, 37.0, "making coffee"),
    ]  # fmt: skip
    (tmp_path / "list.txt").write_text("1 'combing hair'\n2 make up\n")
    (tmp_path / "a.txt").write_text("0:03 0:01 2\n10 12 watching tv\nbroken line\n")
    names = adl.load_action_names(tmp_path / "list.txt")
    assert names == {"1": "combing hair", "2": "make up"}
    assert adl.read_action_annotations(tmp_path / "a.txt", names) == [
        (1.0, 3.0, "make up"),
        (10.0, 12.0, "watching tv"),
    ]


def _check(root: Path, with_video: bool) -> dict:
    bench = load_benchmark(root)
    assert bench["activities"] == ["making coffee", "drinking water/tap"]
    assert bench["categories"] == ["kettle", "mug/cup", "tap", "tv"]
    ann = load_annotations(root, "P_01")
    segs = [(s["activity"], s["object"], s["start"], s["end"]) for s in ann["segments"]]
    assert segs == [
        ("making coffee", "obj_000", 5.0, 12.0),
        ("making coffee", "obj_001", 5.0, 12.0),
        ("drinking water/tap", "obj_002", 20.0, 26.0),
        ("making coffee", "obj_000", 35.0, 37.0),
    ]  # fmt: skip  (action 5 at 30-33 s had no active object: dropped)
    n = round(ann["duration"] * 5)
    assert all(len(o["boxes"]) == n for o in ann["objects"].values()) and ann["actor"]["boxes"] == [None] * n
    cup, tap = ann["objects"]["obj_000"]["boxes"], ann["objects"]["obj_002"]["boxes"]
    assert cup[0] == [round(100 / 640, 4), round(300 / 480, 4), round(180 / 640, 4), round(400 / 480, 4)]
    assert cup[1] == [round(100.4 / 640, 4), round(300 / 480, 4), round(180.4 / 640, 4), round(400 / 480, 4)]
    assert tap[15] is not None and tap[5] is None  # tap annotated every 3 s: no interpolation over the gap
    for obj, crops in ann["crops"].items():
        for crop in crops:
            assert not any(
                s["start"] <= crop["time"] <= s["end"] for s in ann["segments"] if s["object"] == obj
            )
            assert (crop["file"] is not None) == with_video
    assert len(ann["crops"]["obj_003"]) == 3  # the never-active tv
    queries = bench["queries"]
    assert {q["type"] for q in queries} == {"activity", "object", "time"}
    for q in queries:
        check_query(q, ann, bench["activities"])
    return bench


def test_adl_without_videos(tmp_path):
    root = adl.adl_to_benchmark(FIXTURES, None, tmp_path / "out", action_names=NAMES, progress=False)
    bench = _check(root, with_video=False)
    assert bench["videos"]["P_01"] == {"file": None, "annotations": "annotations/P_01.json", "duration": 40.0,
                                       "split": "train"}  # fmt: skip


def test_adl_with_a_real_video(tmp_path):
    """A 160 x 120, 10 fps, 40 s video (the ADL boxes are in 640 x 480 pixels): transcoded and cropped."""
    video_dir = tmp_path / "videos"
    video_dir.mkdir()
    with av.open(str(video_dir / "P_01.MP4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(400):
            img = np.full((120, 160, 3), (i % 256, 80, 160), np.uint8)
            img[75:100, 25:45] = (255, 255, 0)  # where the cup is at the start
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    root = adl.adl_to_benchmark(FIXTURES, video_dir, tmp_path / "out", action_names=NAMES, progress=False)
    bench = _check(root, with_video=True)
    entry = bench["videos"]["P_01"]
    assert entry["file"] == "videos/P_01.mp4" and abs(entry["duration"] - 40.0) < 0.2
    with av.open(str(root / entry["file"])) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe]
        container.seek(0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == round(entry["duration"] * 5) and frames[0].shape == (224, 224, 3)
    assert keys == [float(t) for t in range(len(keys))] and len(keys) == 40
    crop = load_annotations(root, "P_01")["crops"]["obj_000"][0]
    img = np.asarray(Image.open(root / crop["file"]))
    assert (
        20 <= img.shape[1] <= 32 and 25 <= img.shape[0] <= 40
    )  # 80 x 100 annotation px at 1/4 scale + margin
