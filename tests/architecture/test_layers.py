"""The layers of the README's architecture section, checked on the imports themselves.

Dependencies point one way (procedures -> labctl runs/DFA/bench -> calibration -> drivers); only the emulation
composition root (labctl/bench/emulation.py) imports the simulator; no package imports one above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: package -> (its folder, the labctl packages it may import besides itself)
LAYERS: dict[str, tuple[str, set[str]]] = {
    "labctl.drivers": ("drivers", set()),
    "labctl.calibration": ("calibration", {"labctl.drivers"}),
    "labctl.bench": ("labctl/bench", {"labctl.drivers", "labctl.calibration"}),
    "labctl.runs": ("labctl/runs", {"labctl.drivers", "labctl.calibration", "labctl.bench", "labctl"}),
    "labctl.dfa": ("labctl/dfa", {"labctl.drivers", "labctl.calibration", "labctl.runs", "labctl.bench", "labctl"}),
    "labctl.procedures": ("procedures", {"labctl.drivers", "labctl.calibration", "labctl.bench", "labctl.dfa",
                                         "labctl.runs", "labctl"}),
    "labctl.study": ("labctl/study", {"labctl.drivers", "labctl.calibration", "labctl.bench", "labctl.dfa",
                                      "labctl.runs", "labctl.procedures", "labctl"}),
    "labctl.cli": ("labctl/cli", {"labctl.drivers", "labctl.calibration", "labctl.bench", "labctl.dfa",
                                  "labctl.runs", "labctl.procedures", "labctl.study", "labctl"}),
    "labctl.sim": ("sim", {"labctl.drivers"}),
}
SUBPACKAGES = sorted({name for name in LAYERS} | {"labctl.sim"}, key=len, reverse=True)
#: The one module above the transports that may import the simulator.
COMPOSITION_ROOT = Path("labctl/bench/emulation.py")


def _package_of(module: str) -> str | None:
    for name in SUBPACKAGES:
        if module == name or module.startswith(name + "."):
            return name
    return "labctl" if module == "labctl" or module.startswith("labctl.") else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    out = []
    for package, (folder, allowed) in LAYERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            for line, module in _imports(path):
                target = _package_of(module)
                if target is None or target == package or module == "labctl":   # the root holds the version
                    continue
                if target == "labctl.sim" and rel == COMPOSITION_ROOT:
                    continue
                if target not in allowed:
                    out.append(f"{rel}:{line}: {package} imports {module}")
    return out


def test_layers_point_one_way() -> None:
    assert _violations() == []


@pytest.mark.parametrize("package", ["labctl.calibration", "labctl.dfa", "labctl.procedures", "labctl.study",
                                     "labctl.cli"])
def test_nothing_above_the_session_imports_the_simulator(package: str) -> None:
    folder = REPO / LAYERS[package][0]
    offenders = [f"{p.relative_to(REPO)}:{line}" for p in folder.rglob("*.py") for line, m in _imports(p)
                 if _package_of(m) == "labctl.sim"]
    assert offenders == []
