"""The Hugging Face Space: README front matter, requirements.txt and app.py as a Space runs them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "title": "Long-VMNet",
    "emoji": "🎞️",
    "colorFrom": "indigo",
    "colorTo": "blue",
    "sdk": "gradio",
    "sdk_version": "6.31.0",
    "python_version": "3.11",
    "app_file": "app.py",
    "models": ["longvmnet/longvmnet-synth"],
    "license": "apache-2.0",
    "short_description": "Ask questions about long videos from a fixed-size memory",
}
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}  # what the Hub accepts


def front_matter() -> tuple[str, dict]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, (
        "README.md must begin with the Space front matter between two '---' lines (see docs/app.md)."
    )
    return match.group(1), yaml.safe_load(match.group(1))


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements() -> list[Requirement]:
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith(("-e", "--editable", ".", "/", "git+")), (
            f"not installable on a Space: {line}"
        )
        try:
            out.append(Requirement(line))
        except InvalidRequirement as e:
            pytest.fail(f"requirements.txt: {line!r} is not a requirement ({e})")
    return out


def test_front_matter_is_the_space_card():
    raw, meta = front_matter()
    assert meta == EXPECTED
    assert re.search(r'^python_version: "3\.11"$', raw, re.M), (
        "python_version must be quoted (3.10 != '3.10')"
    )
    assert meta["colorFrom"] in COLORS and meta["colorTo"] in COLORS
    assert len(meta["short_description"]) <= 60
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+", m) for m in meta["models"])


def test_front_matter_matches_the_code():
    import gradio

    from longvmnet.demo import HUB_CHECKPOINT

    _, meta = front_matter()
    assert meta["sdk_version"] == gradio.__version__, "keep the Space's Gradio pin at the tested version"
    assert HUB_CHECKPOINT in meta["models"]
    assert meta["license"] == pyproject()["project"]["license"]["text"].lower()
    assert (ROOT / meta["app_file"]).is_file()
    minimum = re.search(r">=\s*([\d.]+)", pyproject()["project"]["requires-python"]).group(1)
    assert tuple(map(int, meta["python_version"].split("."))) >= tuple(map(int, minimum.split(".")))


def test_requirements_list_the_runtime_dependencies():
    reqs = {canonicalize_name(r.name): r for r in requirements()}
    deps = {canonicalize_name(r.name): r for r in map(Requirement, pyproject()["project"]["dependencies"])}
    gradio = deps.pop("gradio")
    assert "gradio" not in reqs or str(reqs.pop("gradio").specifier) == f"=={EXPECTED['sdk_version']}"
    assert set(reqs) == set(deps), "requirements.txt and pyproject.toml list different packages"
    for name, req in reqs.items():
        assert req.specifier == deps[name].specifier, f"{name}: {req.specifier} != {deps[name].specifier}"
    assert gradio.specifier.contains(EXPECTED["sdk_version"])


def test_app_imports_light_and_shows_help():
    """A Space runs `python app.py`; spawned decoder processes re-import it, so it must not load Gradio/torch."""
    code = "import sys, app; print('gradio' in sys.modules, 'torch' in sys.modules, callable(app.build_demo))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]
    help_ = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert help_.returncode == 0
    for flag in ("--checkpoint", "--host", "--port", "--max-upload-mb", "--max-duration-min"):
        assert flag in help_.stdout
