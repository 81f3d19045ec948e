"""The house's structure: the package's import graph has no cycle (every import counts,
function-level ones included), the core (``wavlm_live`` minus the I/O adapters:
audio, server, tui, cli, client) imports no websockets, Textual, sounddevice or soundfile,
and the model's modules are reference PyTorch (the CPU fast path is opt-in, elsewhere)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"wavlm_live": REPO / "wavlm_live", "wavlm_live.server": REPO / "server", "wavlm_live.tui": REPO / "tui"}
ADAPTERS = ("wavlm_live.audio", "wavlm_live.server", "wavlm_live.tui", "wavlm_live.cli", "wavlm_live.client")
FORBIDDEN = ("websockets", "textual", "sounddevice", "soundfile")


def modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> file."""
    out = {}
    for prefix, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "wavlm_live" and parts[:1] in (["server"], ["tui"]):
                continue  # not there: mapped from the top-level folders
            out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its file, function bodies
    included (relative imports resolved; ``from pkg import sub`` counts as importing the
    submodule). Imports under ``if TYPE_CHECKING:`` are for annotations only and never
    run: they do not count."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    found = modules()
    known = set(found)
    graph = {name: imports_of(name, path, known) for name, path in found.items()}
    assert "wavlm_live.cli.app" in graph and "wavlm_live.tasks.classification" in graph
    # Tarjan's strongly connected components
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.slow  # starts a process
def test_the_core_imports_no_io_libraries() -> None:
    core = sorted(m for m in modules() if not m.startswith(ADAPTERS) and not m.endswith("__main__"))
    assert "wavlm_live.engine.engine" in core and "wavlm_live.api" in core and "wavlm_live.tasks" in core
    code = (f"import importlib, json, sys\nfor m in {core!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == []


@pytest.mark.slow  # starts a process
def test_the_adapters_do_import_them_here() -> None:
    """The check above can fail: importing an adapter does load its I/O library."""
    code = "import sys, wavlm_live.server, wavlm_live.tui; print('websockets' in sys.modules, 'textual' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["True", "True"]


def test_the_model_modules_do_not_import_the_fast_path() -> None:
    """backbone.py, attention.py and heads.py are reference PyTorch: they import neither the
    oneDNN kernels nor the fast path (``fast.accelerate`` swaps their modules in), and name
    none of the fast path's switches."""
    found = modules()
    known = set(found)
    fast_path = {"wavlm_live.model.kernels", "wavlm_live.model.fast"}
    assert fast_path <= known
    for name in ("wavlm_live.model.backbone", "wavlm_live.model.attention", "wavlm_live.model.heads"):
        assert not imports_of(name, found[name], known) & fast_path, name
        text = found[name].read_text(encoding="utf-8")
        for switch in ("PACK_BF16_WEIGHTS", "EXPLICIT_BF16_ATTENTION", "mkldnn", "is_grad_enabled"):
            assert switch not in text, (name, switch)
    assert "wavlm_live.model.fast" in imports_of("wavlm_live.model.checkpoint", found["wavlm_live.model.checkpoint"],
                                                 known)
