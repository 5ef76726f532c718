"""The import layers of the product code (README, "Layout"): a module imports from its
own layer or the layers below it, never from one above. The core (rdv's own modules) is what every
job uses; the domain packages build on it; the jobs on them; operations start the jobs; the demo
and the commands sit on top. An arrow up (the core reaching into features/, a job into operations)
is what made `rdv status` load Spark: this test fails the build when one appears, naming it.

Read from the source with `ast`, so imports inside functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("rdv",),
    ("features",),
    ("models",),
    ("rendezvous", "comparison"),
    ("jobs",),
    ("rdv.operations",),
    ("rdv.demo",),
    ("rdv.commands",),
)
PACKAGES = ("rdv", "features", "models", "rendezvous", "comparison", "jobs")


def layer_of(module: str) -> int | None:
    """The layer of a module of ours (by the longest matching prefix), None for anyone else's."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(tree: ast.AST, module: str, root: Path) -> set[str]:
    """Every module the source imports, relative imports resolved: `from rdv import profiles` is
    an import of the module rdv.profiles, `from rdv.config import load_config` of rdv.config."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}", root) else base)
    return names


def upward_imports(root: Path = REPO) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            own = layer_of(module)
            assert own is not None, module
            names = imported(ast.parse(path.read_text(), str(path)), module, root)
            for name in sorted(n for n in names if (layer_of(n) or 0) > own and not n.startswith(module + ".")):
                found.append(f"{module} (layer {LAYERS[own]}) imports {name} (layer {LAYERS[layer_of(name) or 0]})")
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports() == []


@pytest.mark.parametrize(
    ("module", "source", "arrow"),
    [
        ("rdv.config", "from features.transform import check_raw\n", "features.transform"),
        ("features.checks", "def f():\n    from jobs import featurize\n", "jobs.featurize"),
        ("jobs.score", "from rdv.operations.runner import up\n", "rdv.operations.runner"),
        ("rdv.streams", "from rdv import commands\n", "rdv.commands"),
    ],
)
def test_an_arrow_up_is_found_and_named(tmp_path, module, source, arrow):
    """The check itself can fail: a module planted with an upward import, inside a function too."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    for name, text in ((arrow, ""), (module, source)):
        path = tmp_path / Path(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = upward_imports(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{module} ") and f"imports {arrow} " in found[0]


def test_layers_are_read_by_the_longest_prefix():
    assert layer_of("rdv.config") == 0
    assert layer_of("rdv.operations.runner") == 5
    assert layer_of("rdv.commands") == 7
    assert layer_of("pyspark.sql") is None
