"""The demo's memory builder: stage 1 in its own low-priority process, the same memory as in the caller's."""

from __future__ import annotations

import os

import pytest
import torch

from longvmnet import inference
from longvmnet.demo.builder import NICE, Builder
from longvmnet.hub import load_model
from longvmnet.video import VideoError, VideoLimits


@pytest.fixture
def builder(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    b = Builder(model, tmp_path / "builder")
    yield model, b
    b.close()


def test_builder_process_writes_the_callers_memory(builder, make_clip):
    model, b = builder
    video = make_clip("scan.mp4", seconds=40, fps=2, size=(96, 64))
    seen = []
    memory = b.build(video, VideoLimits(), progress=lambda done, total: seen.append((done, total)))
    here = inference.build_memory(model, video)
    assert memory.meta.checkpoint == model.fingerprint()  # the child's model is the caller's
    assert torch.allclose(memory.tokens, here.tokens, atol=1e-5)
    assert memory.times.tolist() == here.times.tolist() and memory.rows.tolist() == here.rows.tolist()
    assert seen and seen[-1][0] == seen[-1][1] == memory.meta.frames_seen  # progress came back
    pid = b._pool.submit(os.getpid).result()
    assert pid != os.getpid()
    assert b._pool.submit(os.nice, 0).result() >= NICE  # below the server's priority


def test_builder_errors_come_back_as_sentences(builder, tmp_path, make_clip):
    _, b = builder
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(VideoError) as err:
        b.build(bad, VideoLimits())
    assert "bad.mp4" in str(err.value) and str(err.value).endswith(".")
    memory = b.build(make_clip("good.mp4", seconds=4, fps=2), VideoLimits())  # and it builds on
    assert memory.meta.frames_seen == 4
