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


# ---------------------------------------------------------------- fuzzing the loader (issue 19)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=300),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip
TENSOR_VALUES = st.sampled_from([0.0, -1.0, 1e38, -1e38, float("nan"), float("inf"), 3.5, 1e5, -7.0, 2**40])


@st.composite
def mutated_files(draw):
    """A valid memory file with one or a few of its parts replaced by odd values: metadata fields, whole
    tensors (other dtypes, shapes, values), the format tag, or the file's bytes."""
    mem = make_memory(m=draw(st.integers(1, 8)))
    tensors = {"tokens": mem.tokens, "times": mem.times, "rows": mem.rows, "cols": mem.cols}
    meta = dict(vars(mem.meta))
    header = {"format": "longvmnet-memory/1"}
    for _ in range(draw(st.integers(1, 3))):
        part = draw(st.sampled_from(["meta", "new meta", "tensor value", "tensor dtype", "tensor shape",
                                     "drop tensor", "format", "raw meta"]))  # fmt: skip
        key = draw(st.sampled_from(sorted(tensors) or ["tokens"]))
        if part == "meta":
            meta[draw(st.sampled_from(sorted(meta)))] = draw(ODD_VALUES)
        elif part == "new meta":
            meta[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
        elif part == "tensor value" and key in tensors and tensors[key].numel():
            t = tensors[key].clone()
            if t.is_floating_point():
                value = draw(TENSOR_VALUES)
            else:  # within the dtype's range (an earlier mutation may have made it uint8)
                info = torch.iinfo(t.dtype)
                value = draw(st.integers(max(info.min, -(2**40)), min(info.max, 2**40)))
            t.view(-1)[draw(st.integers(0, t.numel() - 1))] = value
            tensors[key] = t
        elif part == "tensor dtype" and key in tensors:
            tensors[key] = tensors[key].to(draw(st.sampled_from([torch.float16, torch.float64, torch.int32,
                                                                 torch.int64, torch.uint8])))  # fmt: skip
        elif part == "tensor shape" and key in tensors:
            tensors[key] = torch.zeros(draw(st.lists(st.integers(0, 9), min_size=0, max_size=3)))
        elif part == "drop tensor" and len(tensors) > 1:
            tensors.pop(key, None)
        elif part == "format":
            header["format"] = draw(st.text(max_size=20))
        elif part == "raw meta":
            header["meta"] = draw(st.text(max_size=50))
    header.setdefault("meta", json.dumps(meta, default=str))
    return tensors, header, draw(st.sampled_from([None, "truncate", "flip"])), draw(st.integers(0, 10**6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_files())
def test_fuzzed_memory_files_are_refused_clearly_or_round_trip(tmp_path, case):
    tensors, header, damage, where = case
    path = tmp_path / "fuzz.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=header)
    if damage:
        data = bytearray(path.read_bytes())
        i = where % len(data)
        data = data[:i] if damage == "truncate" else data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        path.write_bytes(bytes(data))
    try:
        memory = Memory.load(path, expected_size=8, expected_dim=4, expected_grid=3, checkpoint="ck1")
    except MemoryFileError as e:
        assert str(e) and "{" not in str(e)[:1]  # a sentence, not a dump
        return
    # accepted: it must be a memory the project can use and write back unchanged
    assert torch.isfinite(memory.tokens).all() and memory.tokens.abs().max() <= 1e4
    assert (memory.times >= 0).all() and (memory.rows >= 0).all() and (memory.rows < 3).all()
    again = Memory.load(memory.save(tmp_path / "again.safetensors"), expected_size=8, expected_dim=4,
                        expected_grid=3, checkpoint="ck1")  # fmt: skip
    for key in ("tokens", "times", "rows", "cols"):
        assert torch.equal(getattr(again, key), getattr(memory, key))
    assert again.meta == memory.meta


def test_crafted_memories_are_refused_with_the_field_named(tmp_path):
    mem = make_memory()
    cases = {
        "token values beyond": lambda t, m: t.update(tokens=torch.full((8, 4), 1e38)),
        "invalid duration_s": lambda t, m: m.update(duration_s=400 * 24 * 3600.0),
        "invalid fps": lambda t, m: m.update(fps="fast"),
        "invalid video": lambda t, m: m.update(video="x" * 1000),
        "times outside its video": lambda t, m: t.update(times=torch.full((8,), -5.0)),
        "patch positions outside": lambda t, m: t.update(rows=torch.full((8,), 7)),
        "unknown metadata": lambda t, m: m.update(owner="x"),
    }
    for expected, change in cases.items():
        tensors = {"tokens": mem.tokens, "times": mem.times, "rows": mem.rows, "cols": mem.cols}
        meta = dict(vars(mem.meta))
        change(tensors, meta)
        path = tmp_path / "crafted.safetensors"
        save_file(tensors, str(path), metadata={"format": "longvmnet-memory/1", "meta": json.dumps(meta)})
        with pytest.raises(MemoryFileError, match=expected):
            Memory.load(path, expected_size=8, expected_dim=4, expected_grid=3, checkpoint="ck1")
