"""The demo end to end: app.py launched in-process with a tiny random checkpoint, driven by gradio_client
through its named endpoints on real video files."""

from __future__ import annotations

import json
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
import torch
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
CARD = """# A card as measure/report.py writes it
## Training data and budget
3 generated videos of 1 minute (5 fps, 224x224), split by video; 10 steps.

## Results on the held-out test videos (1 video, 9 queries)
| method | activity R@1x short | activity R@1x medium | activity R@1x long | object vIoU>0.3 short | object vIoU>0.3 medium | object vIoU>0.3 long | time tIoU>0.3 short | time tIoU>0.3 medium | time tIoU>0.3 long | activity R@3x short |
|---|---|---|---|---|---|---|---|---|---|---|
| Prior (the query alone) | 11.1 | 12.2 | 13.3 | 0.0 | 0.0 | 0.0 | 4.4 | 5.5 | 6.6 | 70.0 |
| Long-VMNet (ships: end to end, the decoder phase, the reader phase) | 41.5 | 42.5 | 43.5 | 21.5 | 22.5 | 23.5 | 31.5 | 32.5 | 33.5 | 80.0 |
"""


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
    write_video(
        d / "short.mp4", moving_square(2, FPS), FPS
    )  # 2 frames at 1 fps: fewer tokens than the memory
    (d / "ckpt" / "README.md").write_text(CARD)
    Image.fromarray(frames[0][30:60, 0:24]).save(d / "crop.png")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    whole = (d / "kitchen.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(whole[: len(whole) // 10])  # an interrupted upload: no index yet
    (d / "half.mp4").write_bytes(whole[: len(whole) // 2])  # decodes, then stops early
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
    out = c.predict(handle_file(crop), start, end, api_name="/ask_activity")[0]
    return {x["label"]: x["confidence"] for x in out["confidences"]}


def assert_sentence(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert message.endswith(".") and "Traceback" not in message, message
    for w in words:
        assert w in message, message


def assert_evidence(answer: dict, gallery: list, start: float, end: float) -> None:
    """The answer's evidence: tokens inside the range, best first, drawn as a mosaic plus their frames."""
    tokens = answer["evidence"]["tokens"]
    assert 1 <= len(tokens) <= 6 and answer["evidence"]["source"]
    assert all(start - 1e-3 <= t["time"] <= end + 1e-3 for t in tokens)
    assert [t["score"] for t in tokens] == sorted((t["score"] for t in tokens), reverse=True)
    frames = {round(t["time"], 3) for t in tokens}
    assert len(gallery) == 1 + len(frames)  # the patches' mosaic, then one image per frame
    band_w, band_h = Image.open(gallery[1]["image"]).size
    assert band_w == W and band_h > H  # the frame under its time band: nothing covered


def test_endpoints_include_find_object(url):
    names = set(client(url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/build_memory", "/load_memory", "/save_memory", "/ask_activity", "/ask_object", "/ask_time",
            "/find_object", "/show_memory"} <= names  # fmt: skip


def test_build_memory_summary(built):
    _, summary, info = built
    c = preset("tiny")
    assert info["video"] == "kitchen.mp4" and info["source"] == "built"
    assert info["duration_s"] == pytest.approx(SECONDS, abs=0.5)
    assert info["frames_seen"] == SECONDS * c.memory_fps
    assert info["tokens"] == info["unique_tokens"] == c.memory_size and info["tokens_per_frame"] == c.grid**2
    assert info["build_s"] > 0
    assert "kitchen.mp4" in summary and f"{c.memory_size} memory tokens" in summary
    assert info["ood_score"] is None  # this checkpoint has no domain.json: no score, no warning


def test_short_video_stores_each_token_once(url, files):
    c = preset("tiny")
    _, info = client(url).predict(handle_file(files["short.mp4"]), api_name="/build_memory")
    assert (
        info["frames_seen"] == 2 and info["tokens"] == info["unique_tokens"] == 2 * c.grid**2 < c.memory_size
    )


def test_knows_panel_reads_the_model_card(served):
    demo, _ = served
    text = demo.logic.knows().replace("\\", "")  # Markdown escapes off
    assert "Trained on 3 generated videos of 1 minute (5 fps, 224x224), split by video." in text
    assert all(a in text for a in preset("tiny").activities)
    assert "41.5 (11.1)" in text and "33.5 (6.6)" in text  # the shipped row, the prior in brackets
    assert "80.0" not in text  # only the three headline metrics
    assert "no calibration.json" in text and "no domain.json" in text


def test_ask_activity_ranks_every_class(built, files):
    c, _, _ = built
    label, text, gallery, path = c.predict(handle_file(files["crop.png"]), 0, 10, api_name="/ask_activity")
    conf = [x["confidence"] for x in label["confidences"]]
    assert {x["label"] for x in label["confidences"]} == set(preset("tiny").activities)
    assert conf == sorted(conf, reverse=True) and label["label"] == label["confidences"][0]["label"]
    assert all(0 <= p <= 1 for p in conf)
    answer = json.loads(Path(path).read_text())
    assert answer["activities"] == pytest.approx(
        {x["label"]: x["confidence"] for x in label["confidences"]}, abs=1e-4
    )
    assert f"Most likely: {label['label']}" in text and "confidence" in text and "Evidence" in text
    assert_evidence(answer, gallery, 0, 10)
    assert answer["coverage"]["tokens"] > 0 and answer["coverage"]["frames"] >= 1


def test_ask_object_draws_boxes_and_clip(built):
    c, _, _ = built
    gallery, clip, text, evidence, path, answer = c.predict("pour", 2, 12, api_name="/ask_object")
    n = (12 - 2) * FPS + 1
    assert len(answer["times"]) == len(answer["boxes"]) == len(answer["presence"]) == n
    assert all(0 <= v <= 1 for box in answer["boxes"] for v in box)
    assert 1 <= len(gallery) <= min(8, len(answer["present"]))
    for item in gallery:
        w, h = Image.open(item["image"]).size
        assert w == W and h > H and item["caption"] is None  # the time sits in a band above the frame
    info = probe(clip)
    assert info.width == W and info.height > H
    assert info.duration_s == pytest.approx(n / FPS, abs=0.3)
    saved = json.loads(Path(path).read_text())
    assert saved["present"] == answer["present"] and 0 <= saved["confidence"] <= 1
    assert_evidence(saved, evidence, 2, 12)
    assert "boxed on" in text


def test_ask_time_span_inside_range(built, files):
    c, _, _ = built
    plot, text, evidence, path, span = c.predict(
        "pour", handle_file(files["crop.png"]), 4, 14, api_name="/ask_time"
    )
    assert 4 <= span["start"] < span["end"] <= 15 and 0 <= span["score"] <= 1 and 0 <= span["confidence"] <= 1
    assert span["start_clock"].startswith("0:") and f"from {span['start_clock'][:4]}" in text
    assert Image.open(plot).format == "PNG"
    assert_evidence(json.loads(Path(path).read_text()), evidence, 4, 14)


def test_find_object_timeline(built, files):
    c, _, info = built
    plot, text, gallery, path, found = c.predict(
        handle_file(files["crop.png"]), 0, None, api_name="/find_object"
    )
    times = found["times"]
    assert times == sorted(times) and len(times) == len(found["scores"]) >= 1
    assert all(-1 <= s <= 1 for s in found["scores"])
    best = found["matches"][0]
    assert best["similarity"] == pytest.approx(
        max(found["scores"]), abs=1e-4
    )  # the best token's frame tops the timeline
    assert 1 + len({m["time"] for m in found["matches"]}) == len(gallery)
    assert Image.open(plot).format == "PNG"
    assert json.loads(Path(path).read_text())["matches"] == found["matches"] and "Best matches" in text
    with pytest.raises(AppError) as err:
        c.predict(handle_file(files["crop.png"]), 15, 5, api_name="/find_object")
    assert_sentence(err, "inside the video")


def test_sparse_range_is_flagged_weak(built, files):
    c, _, info = built
    times = sorted(
        json.loads(
            Path(c.predict(handle_file(files["crop.png"]), 0, None, api_name="/find_object")[3]).read_text()
        )["times"]
    )
    gap = max(zip(times, times[1:]), key=lambda ab: ab[1] - ab[0])  # between two memory frames: no token
    _, text, _, path = c.predict(
        handle_file(files["crop.png"]), gap[0] + 0.2, gap[1] - 0.2, api_name="/ask_activity"
    )
    assert json.loads(Path(path).read_text())["coverage"]["tokens"] == 0
    assert "holds 0 tokens" in text and "answers there are weak" in text


def test_show_memory(built):
    c, _, info = built
    mosaic, hist, frame, caption = c.predict(None, api_name="/show_memory")
    assert Image.open(hist).size == (800, 260)  # the histogram, drawn once per memory (8 x 2.6 in at 100 dpi)
    assert f"{info['tokens']} tokens" in caption and "patches in memory" in caption
    assert Image.open(frame).size == (W, H)
    tiles = int(caption.split("The mosaic shows ")[1].split()[0])
    assert tiles == info["tokens"]
    assert Image.open(mosaic).size[0] * Image.open(mosaic).size[1] >= tiles * 48 * 48
    _, _, frame2, caption2 = c.predict(7.0, api_name="/show_memory")
    assert "(7.0 s) has" in caption2


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
    assert mosaic is None and frame is None and Image.open(hist).size == (800, 260)
    # the memory's own video is accepted and enables the frame views; another video is refused
    fresh.predict(handle_file(saved), handle_file(files["kitchen.mp4"]), api_name="/load_memory")
    assert fresh.predict(None, api_name="/show_memory")[2] is not None
    with pytest.raises(AppError) as err:
        fresh.predict(handle_file(saved), handle_file(files["other.mp4"]), api_name="/load_memory")
    assert_sentence(err, "built from kitchen.mp4")
    with pytest.raises(AppError) as err:
        fresh.predict(handle_file(files["bad.safetensors"]), None, api_name="/load_memory")
    assert_sentence(err, "bad.safetensors")


def test_crafted_memory_files_are_refused_or_escaped(built, url, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    c, _, _ = built
    saved = c.predict(api_name="/save_memory")
    with safe_open(saved, framework="pt") as f:
        header = f.metadata()
    tensors, meta = load_file(saved), json.loads(header["meta"])
    fresh = client(url)
    huge = tmp_path / "huge.safetensors"  # finite but absurd token values
    save_file({**tensors, "tokens": torch.full_like(tensors["tokens"], 1e38)}, str(huge), metadata=header)
    with pytest.raises(AppError) as err:
        fresh.predict(handle_file(str(huge)), None, api_name="/load_memory")
    assert_sentence(err, "token values beyond")
    html = tmp_path / "html.safetensors"  # markup in the video's name is shown as text, never rendered
    named = {**header, "meta": json.dumps({**meta, "video": '<img src=x onerror="alert(1)">.mp4'})}
    save_file(tensors, str(html), metadata=named)
    summary, loaded = fresh.predict(handle_file(str(html)), None, api_name="/load_memory")
    assert loaded["source"] == "loaded" and "<img" not in summary and "img src" in summary


def test_queries_need_a_memory(url, files):
    c = client(url)
    for args, api in [
        ((handle_file(files["crop.png"]), 0, 5), "/ask_activity"),
        (("pour", 0, 5), "/ask_object"),
        ((handle_file(files["crop.png"]), 0, 5), "/find_object"),
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
        ("/find_object", (None, 0, 5), ["no object crop"]),
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
        ("cut.mp4", ["cut.mp4", "probably cut short", "upload the complete file"]),
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


def test_truncated_video_says_how_much_was_decoded(url, files):
    summary, info = client(url).predict(handle_file(files["half.mp4"]), api_name="/build_memory")
    assert 0 < info["frames_seen"] < 0.9 * SECONDS
    assert "Cut short" in summary and f"of 0:{SECONDS}" in summary and "Upload the complete file" in summary


def test_a_path_that_was_not_uploaded_is_refused_with_a_sentence(url, files):
    """A raw API call naming a server file (not an upload): Gradio's own refusal reaches the caller."""
    secret = {"path": str(files["crop.png"]), "meta": {"_type": "gradio.FileData"}}
    event = httpx.post(url + "gradio_api/call/ask_activity", json={"data": [secret, 0, 5]}).json()["event_id"]
    stream = httpx.get(url + f"gradio_api/call/ask_activity/{event}", timeout=60).text
    assert "event: error" in stream and "was not uploaded by a user" in stream, stream


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
    import longvmnet.demo as demo
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


def test_builds_wait_for_each_other_while_queries_and_loads_are_answered(served, built, files):
    demo, url = served
    c, _, _ = built
    saved = c.predict(api_name="/save_memory")
    other = client(url)
    with demo.logic.ctx.build_lock:  # as if another memory build were running
        job = other.submit(handle_file(files["other.mp4"]), api_name="/build_memory")
        assert activities(c, files["crop.png"])  # queries are answered meanwhile
        _, loaded = client(url).predict(handle_file(saved), None, api_name="/load_memory")  # and loads
        assert loaded["source"] == "loaded"
        time.sleep(1.0)
        assert not job.done()
    summary, info = job.result(timeout=60)
    assert info["video"] == "other.mp4"
    fns = {f.api_name: f for f in demo.fns.values()}
    assert fns["build_memory"].concurrency_id == "build" and fns["build_memory"].concurrency_limit == 1
    assert fns["load_memory"].concurrency_id != "build"
    # answers that draw much queue one at a time, apart from the quick ones
    assert fns["ask_object"].concurrency_id == fns["show_memory"].concurrency_id == "heavy"
    assert fns["ask_activity"].concurrency_id not in ("heavy", "build")


def test_sessions_are_capped_least_recently_used_first(served, built):
    import dataclasses

    import gradio as gr

    demo, _ = served
    ctx = demo.logic.ctx
    memory = next(s.memory for s in ctx.live.values() if s.memory is not None)  # the built session's
    saved = ctx.limits, ctx.live
    ctx.limits, ctx.live = dataclasses.replace(ctx.limits, max_sessions=2), {}
    try:
        first, second = ctx.session(None), ctx.session(None)
        first.memory = second.memory = memory
        ctx.memory(first)  # first used again: second is now the least recently used
        third = ctx.session(None)
        assert second.evicted and second.memory is None and not second.folder.exists()
        assert not first.evicted and list(ctx.live.values()) == [first, third]
        assert ctx.memory(first) is memory and list(ctx.live.values()) == [
            third,
            first,
        ]  # a query counts as use
        with pytest.raises(gr.Error, match="closed to make room"):
            ctx.memory(second)
        ctx.session(second)  # its owner builds again: live once more, the least recently used idle one goes
        assert not second.evicted and third.evicted and not first.evicted
    finally:
        for s in list(ctx.live.values()):
            ctx.close_session(s)
        ctx.limits, ctx.live = saved


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
