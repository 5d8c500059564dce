import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from longvmnet.memory import Memory, MemoryFileError, MemoryMeta


def make_memory(m=8, d=4):
    return Memory(
        torch.randn(m, d),
        torch.arange(m).float(),
        torch.arange(m) % 3,
        torch.arange(m) % 2,
        MemoryMeta(video="v.mp4", fingerprint="abc", duration_s=10.0, frames_seen=10, checkpoint="ck1"),
    )


def test_round_trip(tmp_path):
    mem = make_memory()
    path = mem.save(tmp_path / "sub" / "mem.safetensors")
    back = Memory.load(path, expected_size=8, expected_dim=4, checkpoint="ck1")
    for key in ("tokens", "times", "rows", "cols"):
        assert torch.equal(getattr(back, key), getattr(mem, key))
    assert back.meta == mem.meta
    assert not list((tmp_path / "sub").glob(".memory-*"))  # no temporary file left behind


def test_wrong_checkpoint_size_or_width(tmp_path):
    path = make_memory().save(tmp_path / "mem.safetensors")
    with pytest.raises(MemoryFileError, match="another checkpoint"):
        Memory.load(path, checkpoint="other")
    with pytest.raises(MemoryFileError, match="holds 8 tokens"):
        Memory.load(path, expected_size=4)
    assert Memory.load(path, expected_size=16).size == 8  # a video shorter than the memory: fewer tokens
    with pytest.raises(MemoryFileError, match="width 4"):
        Memory.load(path, expected_dim=8)


def test_tampered_files_are_rejected(tmp_path):
    path = make_memory().save(tmp_path / "mem.safetensors")
    tensors = load_file(str(path))
    meta = {"format": "longvmnet-memory/1", "meta": json.dumps({"checkpoint": "ck1"})}
    bad = dict(tensors, tokens=tensors["tokens"].clone())
    bad["tokens"][0, 0] = float("nan")
    save_file(bad, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(MemoryFileError, match="NaN"):
        Memory.load(tmp_path / "nan.safetensors")
    short = dict(tensors, times=tensors["times"][:3])
    save_file(short, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(MemoryFileError, match="times"):
        Memory.load(tmp_path / "short.safetensors")
    save_file(tensors, str(tmp_path / "nofmt.safetensors"))
    with pytest.raises(MemoryFileError, match="not a Long-VMNet memory"):
        Memory.load(tmp_path / "nofmt.safetensors")
    raw = bytearray(path.read_bytes())
    raw[:8] = b"\xff" * 8  # corrupt header length
    (tmp_path / "garbage.safetensors").write_bytes(bytes(raw))
    with pytest.raises(MemoryFileError, match="not a readable memory"):
        Memory.load(tmp_path / "garbage.safetensors")
    with pytest.raises(MemoryFileError, match="does not exist"):
        Memory.load(tmp_path / "missing.safetensors")
