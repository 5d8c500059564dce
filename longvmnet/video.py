"""Video decoding and encoding with PyAV, hardened for untrusted uploads.

Frames are sampled by timestamp (`frame.time`), never by frame counts: for the targets
start, start + 1/fps, start + 2/fps, ... the first decoded frame whose time reaches the target
(less half a source-frame interval) is used, each source frame at most once.
Containers and codecs are allow-listed, frame size and duration are capped, and `FrameReader`
decodes in a child process so that a crash inside FFmpeg cannot take the caller down.
Every error is a `VideoError` whose message is one sentence a user can act on.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

PathLike = str | os.PathLike[str]
Size = tuple[int, int]  # (width, height)

_AV_ERRORS = (av.FFmpegError, AttributeError, OSError)  # what PyAV raises on damaged input
_MAX_REPORTED_ERRORS = 5
_CRASH_ENV = "LONGVMNET_TEST_CRASH_DECODER"  # test hook: "1" makes the FrameReader child die by SIGSEGV


class VideoError(Exception):
    """Base class; str(e) is one sentence saying what is wrong and what to do."""


class VideoNotFoundError(VideoError): ...


class UnsupportedVideoError(VideoError): ...


class NoVideoStreamError(VideoError): ...


class NoFramesError(VideoError): ...


class VideoTooLargeError(VideoError): ...


class VideoTooLongError(VideoError): ...


class DecoderCrashedError(VideoError): ...


_ERROR_TYPES = {cls.__name__: cls for cls in (VideoError, *VideoError.__subclasses__())}


@dataclass(frozen=True)
class VideoLimits:
    max_pixels: int = 3840 * 2160  # width * height of one frame
    max_duration_s: float = 12 * 3600.0
    containers: tuple[str, ...] = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm")  # demuxers
    codecs: tuple[str, ...] = ("h264", "hevc", "vp9", "av1", "mpeg4", "vp8")  # canonical codec names


@dataclass(frozen=True)
class VideoInfo:
    path: str
    container: str  # demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # canonical codec name, e.g. "h264"
    width: int
    height: int
    fps: float  # average frame rate
    duration_s: float
    fingerprint: str  # sha1 over size + first and last MiB, 16 hex digits


@dataclass
class DecodeReport:
    frames: int = 0  # frames yielded
    skipped_packets: int = 0  # packets that failed to decode and were skipped
    errors: list[str] = field(default_factory=list)  # first few error messages


@dataclass
class Clip:
    times: np.ndarray  # (T,) float64 seconds
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB


def _note(report: DecodeReport, error: BaseException) -> None:
    if len(report.errors) < _MAX_REPORTED_ERRORS:
        report.errors.append(str(error))


def _fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fingerprint(path: PathLike) -> str:
    """Short sha1 hex over the file size and its first and last MiB; stable for the same bytes."""
    chunk = 1 << 20
    size = os.path.getsize(path)
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(0, size - chunk))
        digest.update(f.read(chunk))
    return digest.hexdigest()[:16]


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Container duration, else the stream's, else the end of the last packet found by demuxing."""
    if container.duration:
        return container.duration / av.time_base
    if stream.duration:
        return float(stream.duration * stream.time_base)
    end = 0.0
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base))
    except _AV_ERRORS:
        pass
    container.seek(0)
    return end


def _inspect(container: av.container.InputContainer, path: Path, limits: VideoLimits) -> VideoInfo:
    """Check the file against the allow-lists and limits; set the decoder's pixel cap."""
    name = path.name
    fmt = container.format.name
    if not set(fmt.split(",")) & set(limits.containers):
        raise UnsupportedVideoError(
            f"'{name}' uses the {fmt} container, which is not allowed; convert it to MP4 and try again."
        )
    try:
        stream = container.streams.video[0]
    except IndexError:
        raise NoVideoStreamError(
            f"'{name}' has no video stream (it may be audio only); choose a file that contains video."
        ) from None
    codec = stream.codec_context.codec.canonical_name
    if codec not in limits.codecs:
        raise UnsupportedVideoError(
            f"'{name}' uses the {codec} video codec, which is not allowed; "
            f"re-encode it as {', '.join(limits.codecs)} and try again."
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > limits.max_pixels:
        raise VideoTooLargeError(
            f"'{name}' has {width}x{height} frames, more than the limit of {limits.max_pixels} pixels; "
            "downscale it and try again."
        )
    if width <= 0 or height <= 0:
        raise NoFramesError(f"'{name}' declares no frame size; check that the file is a complete video.")
    stream.codec_context.options = {"max_pixels": str(limits.max_pixels)}  # also caps frames that grow later
    duration = _duration(container, stream)
    if duration > limits.max_duration_s:
        raise VideoTooLongError(
            f"'{name}' lasts {_fmt_duration(duration)}, longer than the limit of "
            f"{_fmt_duration(limits.max_duration_s)}; cut it into shorter parts and try again."
        )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return VideoInfo(
        path=str(path),
        container=fmt,
        codec=codec,
        width=width,
        height=height,
        fps=float(rate) if rate else 0.0,
        duration_s=duration,
        fingerprint=fingerprint(path),
    )


def _looks_like_mp4(file: Path) -> bool:
    """An ISO media file (MP4, MOV, 3GP) begins with a box whose type is `ftyp`."""
    with file.open("rb") as f:
        return f.read(8)[4:8] == b"ftyp"


@contextmanager
def _open_video(
    path: PathLike, limits: VideoLimits
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream, VideoInfo]]:
    """Open, validate and always close a video; any PyAV error becomes a `VideoError`."""
    file = Path(path)
    name = file.name
    if not file.exists():
        raise VideoNotFoundError(f"Video file '{name}' was not found; check the path or upload it again.")
    if not file.is_file():
        raise UnsupportedVideoError(f"'{name}' is not a regular file; choose a video file.")
    if file.stat().st_size == 0:
        raise NoFramesError(f"'{name}' is empty; upload the video again.")
    options = {"format_whitelist": ",".join(limits.containers), "protocol_whitelist": "file"}
    try:  # an absolute path never parses as a URL; the whitelists refuse playlists, concat, image2, ...
        container = av.open(os.path.abspath(file), options=options)
    except _AV_ERRORS as e:
        if _looks_like_mp4(file):
            raise UnsupportedVideoError(
                f"'{name}' starts like an MP4 file but its index could not be read: it is probably cut short "
                "(an interrupted upload or copy) or damaged; upload the complete file, or convert it to MP4 "
                "(H.264) and try again."
            ) from e
        raise UnsupportedVideoError(
            f"'{name}' is not a readable video in an allowed format ({', '.join(limits.containers)}); "
            "convert it to MP4 (H.264) and try again."
        ) from e
    with container:
        try:
            info = _inspect(container, file, limits)
            yield container, container.streams.video[0], info
        except _AV_ERRORS as e:
            raise UnsupportedVideoError(
                f"'{name}' could not be decoded ({e}); re-encode it as MP4 (H.264) and try again."
            ) from e


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, report: DecodeReport
) -> Iterator[av.VideoFrame]:
    """Frames in presentation order; a packet that fails to decode is skipped and counted."""
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except _AV_ERRORS as e:
                report.skipped_packets += 1
                _note(report, e)
                continue
            yield from frames
    except _AV_ERRORS as e:  # a damaged container: keep what was decoded so far
        _note(report, e)


def _keyframes_suffice(
    container: av.container.InputContainer, stream: av.VideoStream, step: float, tol: float, start_s: float
) -> bool:
    """True when the first packets show a constant frame rate and regular keyframes on every target.

    Decoding keyframes only then gives the same samples as decoding everything; `_sample` still
    checks each keyframe it uses and falls back to full decoding if the pattern breaks later.
    """
    if tol <= 0:
        return False
    times, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * stream.time_base)
            times.append(t)
            if packet.is_keyframe:
                keys.append(t)
            if len(keys) > 4 or len(times) >= 600:
                break
    except _AV_ERRORS:
        return False
    finally:
        container.seek(0)
    if len(keys) < 3 or keys[0] != min(times):
        return False
    frame_gaps = np.diff(sorted(times))
    key_gap = keys[1] - keys[0]
    constant_rate = np.all(np.abs(frame_gaps - 2 * tol) < 0.2 * tol)
    regular = constant_rate and np.all(np.abs(np.diff(keys) - key_gap) < tol)
    on_grid = lambda x: abs(x / key_gap - round(x / key_gap)) * key_gap < tol / 2
    return bool(regular and key_gap <= step + tol and on_grid(step) and on_grid(start_s - keys[0]))


def _rgb(frame: av.VideoFrame, size: Size | None, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """RGB array of a frame. Pass one `reformatter` for a whole stream: it keeps its scaler context, where
    `frame.reformat` builds a new one per frame (~1 ms each at 224 px, more than decoding a keyframe)."""
    width, height = size if size is not None else (None, None)
    rgb = (reformatter or VideoReformatter()).reformat(frame, width=width, height=height, format="rgb24")
    return rgb.to_ndarray()


def _seek(container: av.container.InputContainer, stream: av.VideoStream, t: float) -> None:
    container.seek(max(0, int(t / stream.time_base)), stream=stream, backward=True)


def iter_frames(
    path: PathLike,
    fps: float,
    size: Size | None = None,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    limits: VideoLimits = VideoLimits(),
    report: DecodeReport | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (time in s, (H, W, 3) uint8 RGB frame) sampled at `fps` by timestamp.

    `size` is (width, height) to squash every frame to; None keeps the native size. Targets run from
    `start_s` to `end_s` (inclusive). Memory does not grow with the video's length.
    Raises a `VideoError` subclass; `report` (if given) counts frames and skipped packets.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    report = report if report is not None else DecodeReport()
    with _open_video(path, limits) as (container, stream, info):
        step = 1.0 / fps
        tol = 0.5 / info.fps if info.fps > 0 else 1e-3  # half a source-frame interval
        keys_only = _keyframes_suffice(container, stream, step, tol, start_s)
        if start_s > 0:
            _seek(container, stream, start_s)
        k, last_t, decoded_any = 0, -math.inf, False  # k: index of the next target start_s + k * step
        reformatter = VideoReformatter()
        while True:
            # thread_type="AUTO" was not faster on 2 cores (slower on 640x360, faster on 720p): left default
            stream.codec_context.skip_frame = "NONKEY" if keys_only else "DEFAULT"
            redo = False
            for frame in _decode(container, stream, report):
                t = float(frame.time) if frame.time is not None else last_t + 2 * tol
                decoded_any = True
                if t > limits.max_duration_s:
                    raise VideoTooLongError(
                        f"'{Path(path).name}' runs past {_fmt_duration(limits.max_duration_s)}, the limit; "
                        "cut it into shorter parts and try again."
                    )
                target = start_s + k * step
                if end_s is not None and target > end_s + 1e-9:
                    return
                if t <= last_t or t < target - tol:
                    continue
                if keys_only and t >= target + tol:  # a non-key frame could be nearer: decode fully from here
                    redo = True
                    break
                yield t, _rgb(frame, size, reformatter)
                report.frames += 1
                last_t = t
                k = math.floor((t + tol - start_s) / step) + 1
            if not redo:
                break
            keys_only = False
            _seek(container, stream, max(last_t, start_s))
        if not decoded_any:
            raise NoFramesError(
                f"'{Path(path).name}' contains no decodable video frames; "
                "check that the file is complete and not damaged, then try again."
            )


def iter_clips(
    path: PathLike,
    fps: float,
    clip_len: int,
    size: Size | None = None,
    *,
    limits: VideoLimits = VideoLimits(),
    report: DecodeReport | None = None,
) -> Iterator[Clip]:
    """Non-overlapping clips of `clip_len` frames sampled at `fps`; the last clip may be shorter."""
    if clip_len < 1:
        raise ValueError(f"clip_len must be at least 1, got {clip_len}.")
    frames = iter_frames(path, fps, size, limits=limits, report=report)
    while batch := list(itertools.islice(frames, clip_len)):
        times, arrays = zip(*batch)
        yield Clip(times=np.asarray(times, dtype=np.float64), frames=np.stack(arrays))


def probe(path: PathLike, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Validate a video against `limits` and describe it, without decoding frames."""
    with _open_video(path, limits) as (_, _, info):
        return info


def read_frames_at(
    path: PathLike, times: Sequence[float], size: Size | None = None, *, limits: VideoLimits = VideoLimits()
) -> list[tuple[float, np.ndarray]]:
    """For each requested time (s), the (frame time, RGB frame) of the nearest frame, in the given order."""
    report = DecodeReport()
    out = []
    with _open_video(path, limits) as (container, stream, _):
        for wanted in times:
            if not math.isfinite(wanted):
                raise ValueError(f"Requested times must be finite, got {wanted}.")
            _seek(container, stream, wanted)
            best: av.VideoFrame | None = None
            for frame in _decode(container, stream, report):
                if frame.time is None:
                    continue
                if best is None or abs(frame.time - wanted) <= abs(best.time - wanted):
                    best = frame
                if frame.time >= wanted:
                    break
            if best is None:
                raise NoFramesError(
                    f"'{Path(path).name}' has no decodable frame near {wanted:.1f} s; "
                    "check that the file is complete and not damaged."
                )
            out.append((float(best.time), _rgb(best, size)))
    return out


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one edge pixel (yuv420p needs even sizes)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frame


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 23,
    keyframe_interval: int | None = None,
    preset: str = "medium",
) -> None:
    """Write (H, W, 3) uint8 RGB frames as an H.264 yuv420p MP4 (faststart), atomically.

    `keyframe_interval` (frames) fixes the GOP and disables scene-cut keyframes, so keyframes are regular.
    `preset` is x264's speed/size trade-off ("ultrafast" encodes answer clips several times faster).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame.")
    shape = np.shape(first)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"Frames must be (H, W, 3) uint8 RGB arrays, got shape {shape}.")
    height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    options = {"crf": str(crf), "preset": preset}
    if keyframe_interval:
        options |= {"g": str(keyframe_interval), "keyint_min": str(keyframe_interval), "sc_threshold": "0"}
    out = Path(path)
    part = out.with_name(out.name + ".part")
    try:
        with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = options
            for array in itertools.chain([first], frames):
                if array.shape != shape or array.dtype != np.uint8:
                    raise ValueError(f"Frames must all be uint8 arrays of shape {shape}, got {array.shape}.")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(_even(array), format="rgb24")))
            container.mux(stream.encode())
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


# ---- decoding in a child process ------------------------------------------------------------------


def _send_all(conn: mp.connection.Connection, outbox: queue.Queue) -> None:
    try:
        while (message := outbox.get()) is not None:
            conn.send(message)
            outbox.task_done()
        conn.close()
    except OSError:  # the parent has gone: nobody to decode for
        os._exit(0)


def _reader_child(
    conn: mp.connection.Connection,
    path: str,
    fps: float,
    clip_len: int,
    size: Size | None,
    limits: VideoLimits,
    prefetch: int,
) -> None:
    """Child process: send ("info", VideoInfo), ("clip", Clip)..., then ("done" or "error", ..., report)."""
    outbox: queue.Queue = queue.Queue(maxsize=prefetch)  # the bounded prefetch queue
    sender = threading.Thread(target=_send_all, args=(conn, outbox), daemon=True)
    sender.start()
    report = DecodeReport()
    try:
        outbox.put(("info", probe(path, limits)))
        if os.environ.get(_CRASH_ENV) == "1":  # test hook: die like a segfaulting decoder, no core file
            import resource

            outbox.join()  # the info has reached the parent
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), signal.SIGSEGV)
        for clip in iter_clips(path, fps, clip_len, size, limits=limits, report=report):
            outbox.put(("clip", clip))
        outbox.put(("done", report))
    except VideoError as e:
        outbox.put(("error", (type(e).__name__, str(e)), report))
    except Exception as e:  # anything else still reaches the user as one sentence
        name = Path(path).name
        message = f"Decoding '{name}' failed unexpectedly ({e}); re-encode it as MP4 and try again."
        outbox.put(("error", ("VideoError", message), report))
    outbox.put(None)
    sender.join()


class FrameReader:
    """`iter_clips` run in a "spawn" child process that decodes up to `prefetch` clips ahead.

    A crash in FFmpeg kills only the child and surfaces as `DecoderCrashedError`; errors raised in the
    child are re-raised here as the same `VideoError` subclass. Use as a context manager (or call
    `close()`): the child is always killed and reaped. Scripts using it need an `if __name__ == "__main__"`
    guard, as with any spawn-based multiprocessing. `timeout_s` bounds the wait for any one message.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        clip_len: int,
        size: Size | None = None,
        *,
        limits: VideoLimits = VideoLimits(),
        prefetch: int = 4,
        timeout_s: float = 600.0,
    ) -> None:
        self._proc: mp.process.BaseProcess | None = None
        if fps <= 0 or clip_len < 1:
            raise ValueError(f"Need fps > 0 and clip_len >= 1, got fps={fps}, clip_len={clip_len}.")
        self._name = Path(path).name
        self._timeout_s = timeout_s
        self.report = DecodeReport()
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=False)
        args = (child_conn, str(path), fps, clip_len, size, limits, max(1, prefetch))
        self._proc = ctx.Process(target=_reader_child, args=args, daemon=True)
        self._proc.start()
        child_conn.close()  # only the child holds the write end, so its death reads as EOF here
        try:
            message = self._receive()
        except BaseException:
            self.close()
            raise
        if message[0] != "info":
            self._finish(message)
        self.info: VideoInfo = message[1]

    def _receive(self) -> tuple:
        deadline = time.monotonic() + self._timeout_s
        while not self._conn.poll(max(0.0, min(0.2, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise DecoderCrashedError(
                    f"The decoder stopped responding while reading '{self._name}'; "
                    "the file may be damaged, so re-encode it as MP4 (H.264) and try again."
                )
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise self._crashed() from None

    def _crashed(self) -> DecoderCrashedError:
        assert self._proc is not None
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return DecoderCrashedError(
            f"The decoder crashed ({how}) while reading '{self._name}'; "
            "the file is probably damaged, so re-encode it as MP4 (H.264) and try again."
        )

    def _finish(self, message: tuple) -> None:
        """Handle a final "done" or "error" message: store the report, stop the child, maybe raise."""
        self.report = message[-1]
        self.close()
        if message[0] == "error":
            cls_name, text = message[1]
            raise _ERROR_TYPES.get(cls_name, VideoError)(text)

    def __iter__(self) -> Iterator[Clip]:
        try:
            while self._proc is not None:  # None once finished or closed
                message = self._receive()
                if message[0] == "clip":
                    yield message[1]
                else:
                    self._finish(message)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the child if it still runs, reap it and close the pipe; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.is_alive():
            proc.kill()
        proc.join()
        proc.close()
        self._conn.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
