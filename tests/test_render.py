"""longvmnet.demo.render on small synthetic inputs and short real videos: no Gradio involved."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from longvmnet.demo import plots as P
from longvmnet.demo import render as R
from longvmnet.video import iter_frames, probe

RED = np.array(R.BOX)


def grid_image(grid: int = 4, cell: int = 8) -> np.ndarray:
    """Each cell (r, c) of a grid x grid image is the flat colour (r * 40, c * 40, 200)."""
    img = np.zeros((grid * cell, grid * cell, 3), np.uint8)
    for r in range(grid):
        for c in range(grid):
            img[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = (r * 40, c * 40, 200)
    return img


def test_clock():
    assert [R.clock(s) for s in (0, 12.3, 605, 3723)] == ["0:00", "0:12", "10:05", "1:02:03"]
    assert [R.clock(s, tenths=True) for s in (12.34, 59.96, 3723.25)] == ["0:12.3", "1:00.0", "1:02:03.2"]


def test_band_keeps_the_whole_frame():
    img = grid_image()
    out = R.band(img, "1:48.2 · present 87%")
    h = out.shape[0] - img.shape[0]
    assert h > 0 and h % 2 == 0 and out.shape[1] == img.shape[1]
    assert (out[h:] == img).all()  # the frame below the band, untouched
    assert (out[:h] == 0).mean() > 0.5 and out[:h].max() > 128  # a black band with white text


@pytest.mark.parametrize(
    "box, expected",
    [
        ([0.25, 0.5, 0.75, 1.0], (25, 25, 75, 49)),
        ([-1, 2, 0.5, -3], (0, 0, 50, 49)),
        ([0.9, 0.8, 0.1, 0.2], (10, 10, 90, 40)),
    ],
)
def test_box_pixels_are_int_and_clipped(box, expected):
    out = R.box_pixels(box, 100, 50)
    assert out == expected and all(isinstance(v, int) for v in out)


def test_display_size_is_even_and_bounded():
    assert R.display_size(1920, 1080, 480) == (480, 270)
    assert R.display_size(101, 51, 480) == (100, 50)
    w, h = R.display_size(333, 999, 200)
    assert max(w, h) <= 200 and w % 2 == h % 2 == 0


def test_draw_boxes_colours_the_outline_only():
    img = np.full((100, 200, 3), 30, np.uint8)
    out = R.draw_boxes(img, [[0.25, 0.2, 0.75, 0.8]], thickness=2)
    x1, y1, x2, y2 = R.box_pixels([0.25, 0.2, 0.75, 0.8], 200, 100)
    assert out.shape == img.shape and out.dtype == np.uint8
    for x, y in [(x1, 50), (x2, 50), (100, y1), (100, y2)]:
        assert (out[y, x] == RED).all()
    assert (out[50, 100] == 30).all() and (out[5, 5] == 30).all()  # inside and outside untouched
    assert (img == 30).all()  # the input is not modified
    labelled = R.draw_boxes(img, [[0.25, 0.2, 0.75, 0.8]], ["87%"])
    assert (labelled != out).any()


def test_timeline_marks_the_span_and_the_probability(tmp_path):
    times = list(np.arange(10.0, 31.0))
    inside = np.where((np.array(times) >= 14.0) & (np.array(times) < 22.0), 0.9, 0.1)
    img = P.timeline(times, inside, (14.0, 22.0), size=(400, 200))
    assert img.shape == (200, 400, 3) and img.dtype == np.uint8
    tinted = np.all(img[100:150] == P._tint(P.SPAN, 0.25), axis=-1).any(axis=0)  # the span, below the legend
    cols = np.flatnonzero(tinted)
    left, right = 40, 400 - 14  # the plot's box; x maps 10-30 s onto it
    at = lambda t: left + (t - 10.0) / 20.0 * (right - left)  # noqa: E731
    assert cols.min() == pytest.approx(at(14.0), abs=1) and cols.max() == pytest.approx(at(22.0), abs=1)
    line = np.all(img == P._rgb(P.LINE), axis=-1)  # the probability: high inside the span, low outside
    rows_inside, rows_outside = np.flatnonzero(line[:, int(at(18.0))]), np.flatnonzero(line[:, int(at(26.0))])
    assert rows_inside.size and rows_outside.size and rows_inside.max() < rows_outside.min()
    assert P.time_ticks(10.0, 30.0) == [10.0, 15.0, 20.0, 25.0, 30.0]
    assert P.time_ticks(0.0, 3600.0)[1] == 600.0 and len(P.time_ticks(5.0, 4000.0)) <= 8
    path = P.save_image(img, tmp_path / "t.png")
    from PIL import Image

    assert Image.open(path).format == "PNG"


def test_find_timeline_marks_the_best_matches(tmp_path):
    fig = P.find_timeline([1.0, 5.0, 9.0], [0.2, 0.8, 0.4], [5.0, 9.0], start=0, end=10)
    ax = fig.axes[0]
    marks = {line.get_label(): line for line in ax.lines}["best matches"]
    np.testing.assert_allclose(marks.get_xdata(), [5.0, 9.0])
    np.testing.assert_allclose(marks.get_ydata(), [0.8, 0.4])
    assert ax.get_xlim() == (0, 10) and ax.get_ylabel() == "cosine similarity"
    path = P.save(fig, tmp_path / "f.png")
    assert Image.open(path).format == "PNG"


def test_memory_histogram_counts_every_token():
    times = [0.0] * 5 + [30.0] * 3 + [59.0] * 2
    fig = P.memory_histogram(times, 60.0, bins=6, tokens_per_frame=4)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 6 and sum(b.get_height() for b in bars) == len(times)
    assert [b.get_height() for b in bars] == [5, 0, 0, 3, 0, 2]
    assert ax.get_xlim() == (0, 60.0)
    assert (
        ax.get_ylabel() == "tokens per 0:10 bin"
        and "10 memory tokens" in ax.get_title()
        and "3 frames" in ax.get_title()
    )
    assert {line.get_label() for line in ax.lines} == {"one frame's worth"}


def test_cut_patches_maps_row_and_col_to_the_frame():
    frames = {0.0: grid_image(), 1.0: 255 - grid_image()}
    patches = R.cut_patches(frames, [0.0, 0.0, 1.1, 0.9], [0, 3, 1, 2], [0, 2, 1, 3], grid=4)
    assert [p.shape for p in patches] == [(8, 8, 3)] * 4
    assert tuple(patches[0][0, 0]) == (0, 0, 200)
    assert tuple(patches[1][0, 0]) == (120, 80, 200)
    assert tuple(patches[2][0, 0]) == (255 - 40, 255 - 40, 55)  # nearest frame to 1.1 s is the one at 1.0 s
    assert tuple(patches[3][0, 0]) == (255 - 80, 255 - 120, 55)


@pytest.mark.parametrize("n", [1, 7, 64])
def test_mosaic_has_one_tile_per_patch(n):
    colours = [(i * 3 % 256, 100, 255 - i * 3 % 256) for i in range(n)]
    patches = [np.full((8, 6, 3), c, np.uint8) for c in colours]
    tile, columns = 20, 5
    img = R.mosaic(patches, [f"{i}" for i in range(n)], tile=tile, columns=columns)
    label_h = max(10, tile // 4)
    rows = -(-n // columns)
    assert img.shape == (rows * (tile + label_h + 2), min(n, columns) * 0 + columns * (tile + 2), 3)
    for i, c in enumerate(colours):  # the centre of tile i has patch i's colour
        y = (i // columns) * (tile + label_h + 2) + 1 + tile // 2
        x = (i % columns) * (tile + 2) + 1 + tile // 2
        assert tuple(img[y, x]) == c


def test_highlight_patches_dims_the_rest():
    frame = np.full((40, 40, 3), 200, np.uint8)
    out = R.highlight_patches(frame, [(1, 2)], grid=4, dim=0.5)
    assert (out[15, 25] == 200).all()  # inside kept patch (1, 2): rows 10-19, cols 20-29
    assert (out[10, 20] == RED).all()  # its outline
    assert (out[5, 5] == 100).all() and (out[35, 35] == 100).all()


def test_crop_box_and_mark_point():
    img = grid_image()
    crop = R.crop_box(img, (20.4, 30), (8, 3.6))
    assert crop.shape == (26, 12, 3) and tuple(crop[0, 0]) == (0, 40, 200)
    assert R.crop_box(img, (-5, -5), (100, 100)).shape == img.shape
    marked = R.mark_point(img, (16, 16))
    assert (marked[16, 16] == RED).all() and (img[16, 16] != RED).any()


# ---- on real video files ---------------------------------------------------------------------------


def test_frames_at_dense_and_sparse(make_clip):
    path = make_clip("c.mp4", seconds=6, fps=10, size=(64, 48))
    dense = R.frames_at(str(path), np.arange(1.0, 3.0, 0.2), max_side=32)
    sparse = R.frames_at(str(path), [5.0, 0.5, 3.0])
    assert [f.shape for _, f in dense] == [(24, 32, 3)] * 10 and sparse[0][1].shape == (48, 64, 3)
    assert [make_clip.index_of(f) for _, f in dense] == list(range(10, 30, 2))
    assert [make_clip.index_of(f) for _, f in sparse] == [50, 5, 30]


def test_object_clip_draws_present_frames(make_clip, tmp_path):
    path = make_clip("c.mp4", seconds=6, fps=10, size=(96, 64))
    times = list(np.round(np.arange(1.0, 5.01, 0.2), 3))
    n = len(times)
    presence = [0.9 if 2.0 <= t <= 3.0 else 0.1 for t in times]
    boxes = [[0.2, 0.2, 0.8, 0.8]] * n
    out = tmp_path / "o.mp4"
    gallery, clip, frames = R.object_clip(
        str(path), str(out), times, boxes, presence, fps=5, max_frames=12, gallery=3
    )
    assert frames == 12 and clip == str(out)
    assert len(gallery) == 3 and all(c is None for _, c in gallery)
    img = gallery[0][0]
    band = img.shape[0] - 64
    x1, y1, _, _ = R.box_pixels(boxes[0], 96, 64)
    assert (
        band > 0 and img.shape[1:] == (96, 3) and (img[band + 40, x1] == RED).all()
    )  # the box, below the band
    decoded = [f for _, f in iter_frames(out, 5)]
    assert len(decoded) == 12 and probe(out).duration_s == pytest.approx(12 / 5, abs=0.25)
    given, _, _ = R.object_clip(str(path), str(tmp_path / "p.mp4"), times, boxes, presence, present=[0, 1],
                                fps=5, max_frames=4)  # fmt: skip
    assert len(given) == 2  # the answer's own frames, whatever their presence
    first = decoded[0]  # at 1.0 s: object absent, so no box (lossy: compare to the flat colour)
    assert np.abs(first[band + 40, x1].astype(int) - first[band + 40, 50].astype(int)).max() < 30


def test_memory_mosaic_and_frame_from_video(make_clip):
    path = make_clip("c.mp4", seconds=6, fps=10, size=(64, 64))
    times = [0.0] * 4 + [2.0] * 3 + [5.0] * 2
    rows = [0, 0, 1, 3, 2, 2, 0, 1, 1]
    cols = [0, 1, 1, 3, 0, 1, 3, 1, 2]
    img, shown = R.memory_mosaic(str(path), times, rows, cols, grid=4, fps=1.0, tile=16, max_tiles=100)
    assert shown == len(times)
    big, shown_few = R.memory_mosaic(str(path), times, rows, cols, grid=4, fps=1.0, tile=16, max_tiles=5)
    assert shown_few == 5 and big.size < img.size
    # every tile is cut from the frame at its time: flat colours say which frame
    columns = img.shape[1] // 18
    for i, t in enumerate(sorted(times)):
        y, x = (i // columns) * (16 + 10 + 2) + 9, (i % columns) * 18 + 9
        assert make_clip.index_of(img[y - 2 : y + 2, x - 2 : x + 2]) == round(t * 10)
    frame, ft, kept = R.memory_frame(str(path), 2.04, times, rows, cols, grid=4, fps=1.0)
    assert ft == pytest.approx(2.0) and kept == 3 and frame.shape == (64, 64, 3)
    assert frame[8:16, 24:32].mean() < frame[40:48, 8:16].mean()  # patch (1, 3) dimmed, (2, 0) kept


def test_token_frames_draw_the_evidence(make_clip):
    path = make_clip("c.mp4", seconds=6, fps=10, size=(64, 64))
    tokens = [(2.0, 1, 1), (5.0, 3, 0), (2.0, 0, 3)]  # best first; two share the frame at 2 s
    mosaic, frames = R.token_frames(str(path), tokens, grid=4, fps=1.0, tile=16)
    assert len(frames) == 2  # one per frame, best first
    band = frames[0].shape[0] - 64
    assert band > 0 and frames[0].shape[1] == 64
    lit = frames[0][band:]
    assert make_clip.index_of(lit[27:30, 27:30]) == 20  # patch (1, 1) of the frame at 2 s, kept bright
    assert lit[40:48, 40:48].mean() < lit[27:30, 27:30].mean()  # a patch not in the evidence is dimmed
    assert (lit[16, 16:32] == RED).all(axis=-1).any()  # outlined
    cell = 16 + 2
    assert mosaic.shape[1] == 3 * cell  # three tiles, in rank order: frames 2 s, 5 s, 2 s
    assert [make_clip.index_of(mosaic[4:12, i * cell + 4 : i * cell + 12]) for i in range(3)] == [20, 50, 20]
