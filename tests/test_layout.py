"""The package's layers (docs/ARCHITECTURE.md): imports only run downward, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "longvmnet"

# Lowest first. A module may import the layers below it; within one layer, top-level modules may import each
# other, folders may not (train/ and explain/ stand side by side).
LAYERS = [
    ["longvmnet", "longvmnet.config", "longvmnet.memory", "longvmnet.video", "longvmnet.distributed"],
    ["longvmnet.model"],
    ["longvmnet.queries", "longvmnet.inference", "longvmnet.hub", "longvmnet.corpus"],
    ["longvmnet.data"],
    ["longvmnet.measure"],
    ["longvmnet.train", "longvmnet.explain"],
    ["longvmnet.demo"],
    ["longvmnet.cli", "app"],
]
ENTRY_POINTS = {
    "longvmnet.train.__main__"
}  # `python -m longvmnet.train` calls the CLI, like `longvmnet train`


def unit(module: str) -> str:
    """The layer entry a module belongs to: the longest prefix listed in LAYERS."""
    names = [n for layer in LAYERS for n in layer if module == n or module.startswith(n + ".")]
    return max(names, key=len)


def rank(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit(module) in layer)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """longvmnet modules imported anywhere in the file (lazy imports inside functions included);
    `from longvmnet.demo import render` counts as longvmnet.demo.render."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "longvmnet"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "longvmnet":
                subs = {f"{node.module}.{a.name}" for a in node.names}
                found |= {s for s in subs if is_module(s)}
                found |= {node.module} if any(not is_module(s) for s in subs) else set()
    return found


def is_folder(unit_name: str) -> bool:
    return (ROOT.joinpath(*unit_name.split(".")) / "__init__.py").is_file() and unit_name != "longvmnet"


SOURCES = [*sorted(PACKAGE.rglob("*.py")), ROOT / "app.py"]


def test_every_module_has_a_layer():
    for path in SOURCES:
        assert rank(module_name(path)) >= 0


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downward(path):
    me = module_name(path)
    if me in ENTRY_POINTS:
        return
    for other in imports(path):
        if unit(other) == unit(me):
            continue
        same_layer = rank(other) == rank(me) and not is_folder(unit(me)) and not is_folder(unit(other))
        assert rank(other) < rank(me) or same_layer, (
            f"{me} (layer {rank(me)}) imports {other} (layer {rank(other)})"
        )


def test_no_module_shares_a_name_with_a_package_beside_it():
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if (p / "__init__.py").is_file())]:
        packages = {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        modules = {p.stem for p in folder.glob("*.py")}
        assert not packages & modules, folder
