"""The layers of formal/ and the direction of their imports (docs/design.md §7), read from the
source with ast (imports inside functions included), and what importing the policies loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("formal", "specs")

# What each layer may import from the project (besides itself).
ALLOWED = {
    "formal.errors": set(),
    "formal.model": {"formal.errors"},
    "formal.concrete": {"formal.errors", "formal.model"},
    "formal.solvers": {"formal.errors"},
    "formal.engines": {"formal.errors", "formal.solvers"},
    "formal.symbolic": {"formal.errors", "formal.model", "formal.solvers", "formal.engines"},
    "specs": {"formal.errors", "formal.model"},
    "formal.cli": {"formal.errors", "formal.model", "formal.concrete", "formal.solvers",
                   "formal.engines", "formal.symbolic", "specs"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(name: str) -> set[str]:
    """The project modules name imports, anywhere in its source."""
    out = set()
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from P import M` imports module P.M when there is one, else names of P
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES
                       else node.module for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES}
    return out - {name}


def layer(name: str) -> str:
    return max((lay for lay in ALLOWED if name == lay or name.startswith(lay + ".")), key=len)


def test_every_module_belongs_to_a_layer():
    top = {n for n in MODULES if n.count(".") == 1 and n.startswith("formal.")
           and MODULES[n].name != "__init__.py"}
    assert top == {"formal.errors", "formal.__main__"}  # no flat module beside the layers
    for name in MODULES:
        if name not in ("formal", "formal.__main__"):
            assert layer(name), name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in ("formal",
                                                                          "formal.__main__")))
def test_imports_point_down_the_layers(name):
    mine = layer(name)
    wrong = {m for m in imports(name) if layer(m) != mine and layer(m) not in ALLOWED[mine]}
    assert not wrong, f"{name} ({mine}) imports {sorted(wrong)}"


def test_no_import_cycle_among_the_project_modules():
    graph = {n: imports(n) for n in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = path[path.index(m):] + [m]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_importing_every_policy_loads_no_solver():
    code = ("import sys, specs; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'pysmt', 'z3', 'cvc5'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
