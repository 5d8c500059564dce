"""Checkpoints: strict save/load round trip, clear errors, and Hub loading by repo id through the real
huggingface_hub client against a loopback server (no internet)."""

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from safetensors.torch import load_file, save_file

from longvmnet.config import preset
from longvmnet.hub import CheckpointError, load_model
from longvmnet.model import LongVMNet


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    LongVMNet(preset("tiny")).save_pretrained(folder)
    return folder


def test_strict_round_trip(checkpoint):
    model = load_model(checkpoint)
    original = load_file(str(checkpoint / "model.safetensors"))
    state = model.state_dict()
    assert set(state) == set(original)
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert model.config == preset("tiny")
    assert not model.training


def test_missing_and_mismatched_checkpoints(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json and model.safetensors"):
        load_model(tmp_path / "empty")
    # a checkpoint missing one weight fails strictly, never silently random
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((checkpoint / "config.json").read_text())
    weights = load_file(str(checkpoint / "model.safetensors"))
    weights.pop(next(k for k in weights if k.startswith("sampler.")))
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="Missing key"):
        load_model(broken)
    # readers of an older layout (another width, or one missing) say how to refit them
    older = tmp_path / "older"
    older.mkdir()
    (older / "config.json").write_text((checkpoint / "config.json").read_text())
    weights = load_file(str(checkpoint / "model.safetensors"))
    weights["reader.mean"], weights["reader.std"] = torch.zeros(7), torch.ones(7)
    save_file(weights, str(older / "model.safetensors"))
    with pytest.raises(CheckpointError, match="older layout .* python -m longvmnet.train.reader"):
        load_model(older)
    weights = load_file(str(checkpoint / "model.safetensors"))
    weights.pop("segment_reader.mean")  # a checkpoint from before the segment reader
    save_file(weights, str(older / "model.safetensors"))
    with pytest.raises(CheckpointError, match="older layout .* python -m longvmnet.train.reader"):
        load_model(older)


class _HubHandler(BaseHTTPRequestHandler):
    """Answers the resolve endpoint of the Hub for one repo: /{org}/{name}/resolve/{rev}/{file}."""

    files: dict[str, bytes] = {}
    commit = "0123456789abcdef0123456789abcdef01234567"
    requests: list[str] = []

    def _reply(self, body: bool):
        self.requests.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve" and "/".join(parts[:2]) == "org/tiny":
            data = self.files.get("/".join(parts[4:]))
            if data is not None:
                self.send_response(200)
                self.send_header("X-Repo-Commit", self.commit)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self._reply(False)

    def do_GET(self):
        self._reply(True)

    def log_message(self, *args):
        pass


def test_load_by_repo_id_from_loopback_hub(checkpoint, tmp_path):
    _HubHandler.files = {
        name: (checkpoint / name).read_bytes() for name in ("config.json", "model.safetensors")
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # huggingface_hub reads HF_ENDPOINT at import time: load in a fresh interpreter
        code = textwrap.dedent("""
            import sys, torch
            from longvmnet.hub import load_model
            m = load_model("org/tiny")
            print(m.fingerprint())
        """)
        env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_CACHE=str(tmp_path / "hub"),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0")  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == load_model(checkpoint).fingerprint()
        assert any("model.safetensors" in r for r in _HubHandler.requests)
        # the real cache layout now holds the snapshot
        snaps = list((tmp_path / "hub").glob("models--org--tiny/snapshots/*/model.safetensors"))
        assert len(snaps) == 1
        # an unknown repo id gives one clear sentence
        bad = subprocess.run([sys.executable, "-c", "from longvmnet.hub import load_model; load_model('org/none')"],
                             env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert bad.returncode != 0 and "Could not load the checkpoint org/none" in bad.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_paper_preset_offline_gives_clear_error(tmp_path):
    """Building the paper preset fresh needs timm's weights from the Hub: offline, a clear sentence."""
    code = "from longvmnet.model import LongVMNet; from longvmnet.config import preset; LongVMNet(preset('paper'))"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "pass a local weight file (backbone_weights) or load a checkpoint" in out.stderr


def test_paper_preset_from_local_weights(tmp_path):
    """The `paper` preset's backbone builds from a local timm weight file, and outputs 49 x 768 tokens."""
    import timm

    net = timm.create_model("swinv2_cr_small_ns_224", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    model = LongVMNet(preset("paper", backbone_weights=str(tmp_path / "swin.safetensors"), memory_frames=2,
                             clip_len=2)).eval()  # fmt: skip
    tokens = model.backbone(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
    assert tokens.shape == (1, 49, 768)
    ref = net.state_dict()
    got = model.backbone.net.state_dict()
    shared = [k for k in ref if k in got]
    assert shared and all(torch.equal(ref[k], got[k]) for k in shared)
