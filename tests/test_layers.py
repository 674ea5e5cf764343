"""The package's layers point one way: each imports only itself and the layers below it, at module level and
inside functions alike, and every module of a layer imports with all the layers above it blocked."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edge_medsam

ROOT = Path(edge_medsam.__file__).parent
# Lowest first. A top-level module or subpackage of edge_medsam belongs to exactly one layer.
LAYERS: list[set[str]] = [
    {"errors", "config_check", "versions", "modalities", "preprocess", "prompt_labels", "io", "metrics", "engine",
     "run_compare", "lazy"},
    {"data"},
    {"runtime"},
    {"models", "evaluation"},
    {"recipes", "training", "compress", "reporting", "benchmark"},
    {"pipeline", "serve"},
    {"cli", "apps", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(module: str) -> str:
    """edge_medsam.data.synth.ct → "data"; the package itself → "" (its version, below every layer)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[str]:
    return sorted(".".join(("edge_medsam", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
                  for p in ROOT.rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every edge_medsam import in a file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edge_medsam"):
            names = [node.module] if node.module != "edge_medsam" else [f"edge_medsam.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("edge_medsam.")]
    return found


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _modules()} - {""}
    assert units <= set(LAYER_OF), f"place {sorted(units - set(LAYER_OF))} in LAYERS"


def test_no_import_points_upward():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for line, module in _imports(path):
            target = _unit(module)
            if target and target != "__version__" and LAYER_OF.get(target, -1) > LAYER_OF[unit]:
                upward.append(f"{rel}:{line} ({unit}) imports {module}")
    assert not upward, "\n".join(upward)


BLOCKED_IMPORT = """
import importlib, importlib.abc, sys
blocked = set(sys.argv[2].split(",")) if sys.argv[2] else set()
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if parts[0] == "edge_medsam" and len(parts) > 1 and parts[1] in blocked:
            raise ModuleNotFoundError(f"blocked layer: {name}", name=name)
sys.meta_path.insert(0, Block())
for module in sys.argv[1].split(","):
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if (err.name or "").startswith("edge_medsam"):
            raise
        print(f"skipped {module}: {err.name} is not installed")
"""


@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_each_layer_imports_with_the_layers_above_blocked(layer):
    above = sorted(set().union(*LAYERS[layer + 1:]))
    modules = [m for m in _modules() if _unit(m) in LAYERS[layer] and not m.endswith("__main__")]
    result = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, ",".join(modules), ",".join(above)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
