"""The demo end to end: app.py launched in-process with a tiny random checkpoint, driven by gradio_client
through its named endpoints on real video files."""

from __future__ import annotations

import os
import socket
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from longvmnet import preset  # noqa: E402
from longvmnet.model import LongVMNet  # noqa: E402
from longvmnet.video import probe, write_video  # noqa: E402

SECONDS, FPS, W, H = 20, 5, 128, 96


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moving_square(seconds: float, fps: int, size=(W, H)) -> list[np.ndarray]:
    w, h = size
    frames = []
    for i in range(int(seconds * fps)):
        f = np.full((h, w, 3), 50, np.uint8)
        x = (i * 2) % (w - 24)
        f[30:60, x : x + 24] = (220, 60, 40)
        frames.append(f)
    return frames


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, i * 1024, Fraction(1, 16000)
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("app")
    LongVMNet(preset("tiny")).save_pretrained(d / "ckpt")
    frames = moving_square(SECONDS, FPS)
    write_video(d / "kitchen.mp4", frames, FPS, keyframe_interval=FPS)
    write_video(d / "other.mp4", moving_square(6, FPS), FPS)
    write_video(d / "long.mp4", moving_square(40, 1, (32, 32)), 1)  # over the 0.5 min limit below
    Image.fromarray(frames[0][30:60, 0:24]).save(d / "crop.png")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (d / "fake.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (d / "bad.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    audio_only(d / "voice.mp4")
    return {p.name: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def served(files):
    demo = app.build_demo(str(files["ckpt"]), max_upload_mb=1, max_duration_min=0.5, examples=None)
    _, url, _ = demo.launch(
        prevent_thread_lock=True,
        server_port=free_port(),
        quiet=True,
        **app.launch_options(max_upload_mb=1, examples=None),
    )
    yield demo, url
    demo.close()
    demo.logic.close()  # stop its worker processes, remove its session folders


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[1]


def client(url: str) -> Client:
    return Client(url, analytics_enabled=False, verbose=False)


@pytest.fixture(scope="module")
def built(url, files):
    """One session with a memory of kitchen.mp4."""
    c = client(url)
    summary, info = c.predict(handle_file(files["kitchen.mp4"]), api_name="/build_memory")
    return c, summary, info


def activities(c: Client, crop: Path, start=0, end=10) -> dict[str, float]:
    out = c.predict(handle_file(crop), start, end, api_name="/ask_activity")
    return {x["label"]: x["confidence"] for x in out["confidences"]}


def assert_sentence(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert message.endswith(".") and "Traceback" not in message, message
    for w in words:
        assert w in message, message


def test_build_memory_summary(built):
    _, summary, info = built
    c = preset("tiny")
    assert info["video"] == "kitchen.mp4" and info["source"] == "built"
    assert info["duration_s"] == pytest.approx(SECONDS, abs=0.5)
    assert info["frames_seen"] == SECONDS * c.memory_fps
    assert info["tokens"] == c.memory_size and info["tokens_per_frame"] == c.grid**2
    assert info["build_s"] > 0
    assert "kitchen.mp4" in summary and f"{c.memory_size} memory tokens" in summary


def test_ask_activity_ranks_every_class(built, files):
    c, _, _ = built
    out = c.predict(handle_file(files["crop.png"]), 0, 10, api_name="/ask_activity")
    conf = [x["confidence"] for x in out["confidences"]]
    assert {x["label"] for x in out["confidences"]} == set(preset("tiny").activities)
    assert conf == sorted(conf, reverse=True) and out["label"] == out["confidences"][0]["label"]
    assert all(0 <= p <= 1 for p in conf)


def test_ask_object_draws_boxes_and_clip(built):
    c, _, _ = built
    gallery, clip, answer = c.predict("pour", 2, 12, api_name="/ask_object")
    n = (12 - 2) * FPS + 1
    assert len(answer["times"]) == len(answer["boxes"]) == len(answer["presence"]) == n
    assert all(0 <= v <= 1 for box in answer["boxes"] for v in box)
    assert 1 <= len(gallery) <= min(8, len(answer["present"]))
    for item in gallery:
        assert Image.open(item["image"]).size == (W, H) and " s · " in item["caption"]
    info = probe(clip)
    assert (info.width, info.height) == (W, H)
    assert info.duration_s == pytest.approx(n / FPS, abs=0.3)


def test_ask_time_span_inside_range(built, files):
    c, _, _ = built
    plot, span = c.predict("pour", handle_file(files["crop.png"]), 4, 14, api_name="/ask_time")
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/")
    assert 4 <= span["start"] < span["end"] <= 15 and 0 <= span["score"] <= 1


def test_show_memory(built):
    c, _, info = built
    mosaic, hist, frame, caption = c.predict(None, api_name="/show_memory")
    assert hist["type"] == "matplotlib"
    assert f"{info['tokens']} tokens" in caption and "patches in memory" in caption
    assert Image.open(frame).size == (W, H)
    tiles = int(caption.split("The mosaic shows ")[1].split()[0])
    assert tiles == info["tokens"]
    assert Image.open(mosaic).size[0] * Image.open(mosaic).size[1] >= tiles * 48 * 48
    _, _, frame2, caption2 = c.predict(7.0, api_name="/show_memory")
    assert "the frame at 7.0 s has" in caption2


def test_save_and_load_memory(built, url, files, tmp_path):
    c, _, info = built
    before = activities(c, files["crop.png"])
    saved = c.predict(api_name="/save_memory")
    assert saved.endswith(".memory.safetensors")
    fresh = client(url)
    summary, loaded = fresh.predict(handle_file(saved), None, api_name="/load_memory")
    assert loaded["source"] == "loaded" and loaded["tokens"] == info["tokens"] and "loaded" in summary
    assert activities(fresh, files["crop.png"]) == pytest.approx(before)
    mosaic, hist, frame, _ = fresh.predict(None, api_name="/show_memory")  # no video: only the histogram
    assert mosaic is None and frame is None and hist["type"] == "matplotlib"
    # the memory's own video is accepted and enables the frame views; another video is refused
    fresh.predict(handle_file(saved), handle_file(files["kitchen.mp4"]), api_name="/load_memory")
    assert fresh.predict(None, api_name="/show_memory")[2] is not None
    with pytest.raises(AppError) as err:
        fresh.predict(handle_file(saved), handle_file(files["other.mp4"]), api_name="/load_memory")
    assert_sentence(err, "built from kitchen.mp4")
    with pytest.raises(AppError) as err:
        fresh.predict(handle_file(files["bad.safetensors"]), None, api_name="/load_memory")
    assert_sentence(err, "bad.safetensors")


def test_queries_need_a_memory(url, files):
    c = client(url)
    for args, api in [
        ((handle_file(files["crop.png"]), 0, 5), "/ask_activity"),
        (("pour", 0, 5), "/ask_object"),
        ((None,), "/show_memory"),
        ((), "/save_memory"),
    ]:
        with pytest.raises(AppError) as err:
            c.predict(*args, api_name=api)
        assert_sentence(err, "no memory yet")


@pytest.mark.parametrize(
    "api, args, words",
    [
        ("/ask_activity", (None, 0, 5), ["no object crop"]),
        ("/ask_activity", ("crop.png", 0, 999), ["outside the video"]),
        ("/ask_activity", ("crop.png", 8, 3), ["must end after it starts"]),
        ("/ask_activity", ("fake.png", 0, 5), ["fake.png", "not a readable"]),
        ("/ask_object", ("dance", 0, 5), ["Unknown activity 'dance'"]),
        ("/ask_time", ("pour", None, 0, 5), ["no object crop"]),
    ],
)
def test_bad_queries_give_one_sentence(built, files, api, args, words):
    c, _, _ = built
    args = [handle_file(files[a]) if isinstance(a, str) and a in files else a for a in args]
    with pytest.raises(AppError) as err:
        c.predict(*args, api_name=api)
    assert_sentence(err, *words)


@pytest.mark.parametrize(
    "name, words",
    [
        ("corrupt.mp4", ["corrupt.mp4", "convert it to MP4"]),
        ("voice.mp4", ["voice.mp4", "no video stream"]),
        ("long.mp4", ["long.mp4", "longer than the limit"]),
    ],
)
def test_bad_uploads_keep_the_memory(built, files, name, words):
    c, _, _ = built
    before = activities(c, files["crop.png"])
    with pytest.raises(AppError) as err:
        c.predict(handle_file(files[name]), api_name="/build_memory")
    assert_sentence(err, *words)
    assert activities(c, files["crop.png"]) == pytest.approx(before)  # same memory, still served


def test_crashing_decoder_does_not_take_the_server_down(built, files, monkeypatch):
    c, _, _ = built
    before = activities(c, files["crop.png"])
    monkeypatch.setenv("LONGVMNET_TEST_CRASH_DECODER", "1")  # the decoder child dies by SIGSEGV
    with pytest.raises(AppError) as err:
        c.predict(handle_file(files["other.mp4"]), api_name="/build_memory")
    assert_sentence(err, "decoder crashed")
    monkeypatch.delenv("LONGVMNET_TEST_CRASH_DECODER")
    assert activities(c, files["crop.png"]) == pytest.approx(before)


def test_too_large_upload_is_refused(url, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * 2**19))  # 1.5 MB: refused at upload, before anything decodes it
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client(url).predict(handle_file(big), api_name="/build_memory")  # the client reads the app's limit
    with big.open("rb") as f:  # and the server enforces it
        response = httpx.post(url + "gradio_api/upload", files={"files": ("big.mp4", f, "video/mp4")})
    assert response.status_code == 413, response.text


def test_missing_checkpoint_is_one_sentence(monkeypatch, tmp_path, capsys):
    from longvmnet import demo
    from longvmnet.hub import CheckpointError

    monkeypatch.delenv("LONGVMNET_CHECKPOINT", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setattr(demo, "DEFAULT_CHECKPOINT", str(tmp_path / "longvmnet-synth"))
    with pytest.raises(CheckpointError, match="is missing; run `make checkpoint`"):
        demo.load_demo_model(None)
    with pytest.raises(SystemExit) as exit_:
        app.main(["--checkpoint", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The checkpoint folder") and err.count("\n") == 0


def test_builds_wait_for_each_other_while_queries_are_answered(served, built, files):
    demo, url = served
    c, _, _ = built
    other = client(url)
    with demo.logic._build_lock:  # as if another memory build were running in this worker
        job = other.submit(handle_file(files["other.mp4"]), api_name="/build_memory")
        assert activities(c, files["crop.png"])  # queries are answered meanwhile
        time.sleep(1.0)
        assert not job.done()
    summary, info = job.result(timeout=60)
    assert info["video"] == "other.mp4"
    builds = {f.api_name: f for f in demo.fns.values() if f.api_name in ("build_memory", "load_memory")}
    assert {f.concurrency_id for f in builds.values()} == {"build"}
    assert all(f.concurrency_limit == 1 for f in builds.values())


def test_sessions_expire_and_clean_up(served, tmp_path):
    import gradio as gr

    demo, _ = served
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert len(states) == 1 and states[0].time_to_live == demo.logic.limits.session_ttl_s
    assert states[0].delete_callback == demo.logic.close_session
    session = demo.logic.new_session()
    (session.folder / "saved").mkdir()
    (session.folder / "saved" / "x.memory.safetensors").write_bytes(b"0")
    states[0].delete_callback(session)
    assert not session.folder.exists()
    states[0].delete_callback(None)  # a session that never built anything
