"""The demo's three example questions (assets/examples/queries.json), asked through the CLI with the bundled
checkpoint on the example video, get right answers: the activity query's top answer is a true activity, the
object query's boxes overlap the truth (IoU >= 0.5) on most of its frames, the time query's span has
tIoU >= 0.5."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longvmnet.measure.evaluate import true_boxes
from longvmnet.measure.metrics import tiou
from longvmnet.model.box_ops import paired_iou

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
CHECKPOINT = ROOT / "checkpoints" / "longvmnet-synth"
SPEC = json.loads((EXAMPLES / "queries.json").read_text())
QUERIES = {q["type"]: q for q in SPEC["queries"]}


def cli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "longvmnet.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def memory(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("examples") / "kitchen.safetensors"
    built = cli("build-memory", str(EXAMPLES / SPEC["video"]), "--checkpoint", str(CHECKPOINT), "--out",
                str(out), "--quiet")  # fmt: skip
    assert built["duration_s"] == pytest.approx(SPEC["duration"], abs=1.0)
    return str(out)


def ask(memory: str, q: dict) -> dict:
    args = ["ask", memory, "--checkpoint", str(CHECKPOINT), q["type"], "--start", str(q["start"]), "--end",
            str(q["end"])]  # fmt: skip
    if q["crop"]:
        args += ["--object", str(EXAMPLES / q["crop"])]
    if q["activity"]:
        args += ["--activity", q["activity"]]
    return cli(*args)


def test_activity_example_ranks_a_true_activity_first(memory):
    q = QUERIES["activity"]
    ranked = ask(memory, q)["activities"]
    assert ranked[0][0] in q["answer"]["activities"], ranked[:3]


def test_object_example_boxes_the_object_on_most_of_its_frames(memory):
    q = QUERIES["object"]
    a = ask(memory, q)
    fps = 5.0  # the video's and the object queries' frame rate: frames are matched by index, as evaluate does
    predicted = {round(t * fps): box for t, box in zip(a["times"], a["boxes"])}
    truth = true_boxes(q["answer"], fps)
    both = [f for f in truth if f in predicted]
    assert len(both) == len(truth)  # every annotated frame is a sampled frame of the answer
    iou = paired_iou(torch.tensor([predicted[t] for t in both]), torch.tensor([truth[t] for t in both]))[0]
    assert float((iou >= 0.5).float().mean()) > 0.5, f"IoU >= 0.5 on {float((iou >= 0.5).float().mean()):.0%}"


def test_time_example_finds_the_span(memory):
    q = QUERIES["time"]
    a = ask(memory, q)
    span = tiou((a["start"], a["end"]), (q["answer"]["start"], q["answer"]["end"]))
    assert span >= 0.5, (a["start"], a["end"], span)
