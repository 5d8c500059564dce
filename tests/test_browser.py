"""The demo in a real browser: Playwright driving Debian's headless Chromium through a whole session on the
example video (assets/examples), with a tiny random checkpoint. Saves artifacts/app.png; with
LONGVMNET_DOCS_SCREENSHOT=1 also docs/app.png (using the bundled checkpoint when it exists)."""

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
from longvmnet import preset
from longvmnet.model import LongVMNet

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
DOCS = os.environ.get("LONGVMNET_DOCS_SCREENSHOT") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Chromium is missing: run `make browser` (installs Debian's chromium) to run the browser tests."
        )
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    assert (EXAMPLES / "queries.json").is_file(), (
        "assets/examples is missing: run python assets/make_examples.py"
    )
    bundled = ROOT / "checkpoints" / "longvmnet-synth"
    if DOCS and (bundled / "model.safetensors").is_file():
        checkpoint = str(bundled)
    else:
        checkpoint = tmp_path_factory.mktemp("browser") / "ckpt"
        LongVMNet(preset("tiny")).save_pretrained(checkpoint)
    demo = app.build_demo(str(checkpoint), examples=EXAMPLES)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_port=free_port(), quiet=True, **app.launch_options(examples=EXAMPLES)
    )
    yield url
    demo.close()
    demo.logic.close()  # stop its worker processes, remove its session folders


@pytest.fixture
def page(chromium, url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
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


def span_of(page) -> dict:
    raw = re.sub(r"\s+", "", text(page, "#span"))
    return json.loads(raw[raw.index("{") :])


def test_a_whole_session_in_the_browser(page):
    spec = json.loads((EXAMPLES / "queries.json").read_text())
    duration = spec["duration"]

    # upload the video and build the memory: the progress shows frames scanned out of the total
    page.locator("#video input[type=file]").set_input_files(str(EXAMPLES / spec["video"]))
    page.wait_for_selector("#video video")
    page.locator("#build").click()
    progress = wait_text(page, "#summary", rf"\d+/{int(duration)} frames")
    assert "Scanning frames" in progress or "frames" in progress
    summary = wait_text(page, "#summary", "memory tokens")
    assert f"{int(duration)} frames scanned" in summary
    page.wait_for_function(f"document.querySelector('#end input').value == '{duration:g}'")

    # draw the object's box on a frame: slider, then two clicks
    slider = page.locator("#frame-time input[type=range]")
    box = slider.bounding_box()
    slider.click(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    frame = page.locator("#frame img")
    frame.wait_for()
    size = frame.bounding_box()
    frame.click(position={"x": size["width"] * 0.3, "y": size["height"] * 0.3})
    page.wait_for_timeout(500)
    frame.click(position={"x": size["width"] * 0.6, "y": size["height"] * 0.7})
    wait_text(page, "#crop", r"crop-[0-9a-f]+")
    page.locator("#crop-view img").wait_for()

    # activity query on the drawn crop
    page.locator("#ask-activity").click()
    ranked = wait_text(page, "#activities", "%")
    assert sum(a in ranked for a in preset("tiny").activities) >= 3

    # object query: frames with boxes and a clip
    page.get_by_role("tab", name="Which object, where? (object)").click()
    page.locator("#ask-object").click()
    page.locator("#gallery img").first.wait_for()
    page.locator("#clip video").wait_for()
    assert 1 <= page.locator("#gallery img").count() <= 8

    # time query from the example row: timeline plot, and the player jumps to the span's start
    page.get_by_role("button", name=re.compile("^time: when is")).click()
    q = spec["queries"][2]
    page.wait_for_function(f"document.querySelector('#start input').value == '{q['start']:g}'")
    page.get_by_role("tab", name="When? (time)").click()
    page.locator("#ask-time").click()
    page.locator("#timeline img").wait_for()
    wait_text(page, "#span", "score")
    span = span_of(page)
    assert q["start"] <= span["start"] < span["end"] <= q["end"] + 1
    page.wait_for_function(
        f"Math.abs(document.querySelector('#video video').currentTime - {span['start']}) < 1.5",
        timeout=15_000,
    )

    # a bad range: one sentence in a toast, and the app keeps answering
    page.locator("#end input").fill("99999")
    page.get_by_role("tab", name="What is done to this object? (activity)").click()
    page.locator("#ask-activity").click()
    toast = page.get_by_test_id("toast-body").first
    toast.wait_for()
    assert "outside the video" in toast.inner_text()
    page.get_by_test_id("toast-close").first.click()
    toast.wait_for(state="hidden")
    page.locator("#end input").fill(f"{duration:g}")

    # the memory: mosaic, histogram, a frame with its patches
    page.get_by_role("tab", name="Memory").click()
    page.locator("#show-memory").click()
    page.locator("#mosaic img").wait_for()
    page.locator("#memory-frame img").wait_for()
    page.locator("#histogram img").wait_for()
    caption = wait_text(page, "#memory-caption", "patches in memory")
    assert "tokens from" in caption

    out = ROOT / "artifacts" / "app.png"
    out.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    assert Image.open(out).size[0] == 1280
    if DOCS:
        image = Image.open(out).convert("RGB")
        image = image.resize((960, round(image.height * 960 / image.width)), Image.LANCZOS)
        buf = io.BytesIO()
        image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        assert buf.tell() < 400_000, f"docs/app.png would be {buf.tell()} bytes"
        (ROOT / "docs" / "app.png").write_bytes(buf.getvalue())
