"""The package's layers (DESIGN.md): a module imports only from its own layer or the ones below it, lazy
imports inside functions included, and nothing below the study layer imports Optuna."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrpo_study"

# bottom to top; the package's face (__init__.py, __main__.py) stands above them all
LAYERS = ("base", "schedules", "tasks", "training", "views", "study", "integrations", "cli")
BASE = ("errors", "names", "interrupts", "_version", "metrics")
WITHOUT_OPTUNA = ("base", "schedules", "tasks", "training")
FACE = ("lrpo_study", "lrpo_study.__main__")


def layer_of(module: str) -> str | None:
    """``lrpo_study.training.loop`` → ``training``; None for the package's face and other packages."""
    parts = module.split(".")
    if parts[0] != "lrpo_study" or module in FACE:
        return None
    return "base" if parts[1] in BASE else parts[1]


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(module: str, source: str, *, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the source, at any depth."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            for alias in node.names:  # ``from lrpo_study.views import record`` imports lrpo_study.views.record
                submodule = PACKAGE.parent / name.replace(".", "/") / f"{alias.name}.py"
                found.append((node.lineno, f"{name}.{alias.name}" if submodule.exists() else name))
    return found


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    here = LAYERS.index(layer_of(module) or "")
    found = []
    for line, imported in imports_of(module, source, is_package=is_package):
        layer = layer_of(imported)
        if imported in FACE or (layer is not None and LAYERS.index(layer) > here):
            found.append(f"line {line}: {imported}")
        if imported.split(".")[0] == "optuna" and LAYERS[here] in WITHOUT_OPTUNA:
            found.append(f"line {line}: {imported} (no Optuna below the study layer)")
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if module_of(p) not in FACE)


def test_every_module_is_on_a_named_layer() -> None:
    unknown = {module_of(p) for p in MODULES if layer_of(module_of(p)) not in LAYERS}
    assert not unknown, f"modules outside the layers of DESIGN.md: {sorted(unknown)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers_only(path: Path) -> None:
    module = module_of(path)
    found = violations(module, path.read_text(), is_package=path.name == "__init__.py")
    assert not found, f"{module} (layer {layer_of(module)}) imports upward: {found}"


@pytest.mark.parametrize(("late_import", "why"), [
    ("from lrpo_study.study.runner import run_all", "lrpo_study.study.runner"),
    ("from ..views import record", "lrpo_study.views.record"),
    ("import optuna", "no Optuna below the study layer"),
    ("from lrpo_study import load_schedule", "lrpo_study"),
])
def test_the_check_finds_a_lazy_upward_import(late_import: str, why: str) -> None:
    source = (PACKAGE / "training" / "loop.py").read_text() + f"\n\ndef _late():\n    {late_import}\n"
    found = violations("lrpo_study.training.loop", source)
    assert len(found) == 1 and why in found[0], found
