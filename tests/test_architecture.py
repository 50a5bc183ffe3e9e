"""The import structure a newcomer can rely on: no module imports itself in a circle, and the
line PC's runtime (the service, the engine, predict) never loads PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan): each group imports itself in a circle,
    imports inside functions included, which is what keeps a circle open without failing."""
    modules = sorted(graph.modules)
    imported = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in imported[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_no_module_imports_itself_in_a_circle():
    cycles = import_cycles(grimp.build_graph("fabricad"))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_circle(tmp_path, monkeypatch):
    """The check above can fail: a two-module circle held open by an import inside a function."""
    package = tmp_path / "circle_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circle_pkg import b\n")
    (package / "b.py").write_text("def late():\n    from circle_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles(grimp.build_graph("circle_pkg")) == [["circle_pkg.a", "circle_pkg.b"]]


def test_the_runtime_never_loads_torch():
    """What a line PC imports — the service, the engine, predict, alignment, edges — leaves the
    training stack out, so `pip install fabricad` without PyTorch serves bundles."""
    code = ("import sys, fabricad.service.app, fabricad.inference.engine, fabricad.inference.predict, "
            "fabricad.data.alignment, fabricad.data.fabric_edges, fabricad.cli; "
            "print(sorted(m for m in ('torch', 'timm', 'sklearn', 'albumentations', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    assert loaded == "[]"


def test_import_linter_contracts_hold():
    """pyproject.toml's contracts: the packages form layers (none imports one above it, so no two
    import each other), and the runtime (the service, the engine, data, rolls) never imports the
    training side (models, backbones, training, evaluation, export), torch or timm, not even
    through another module or inside a function."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
