"""The layout's rules, checked rather than remembered (docs/architecture.md explains them).

The torch-free boundary, in one line: only ``resnet_core/nets/``, ``resnet_core/training/``, the
modules of ``resnet_core/analysis/`` other than an ``__init__.py``, and the worker process's
``resnet_core/worker.py`` import torch. The dashboard's
server, which must start fast and never load torch, imports none of them.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("resnet_core", "dashboard")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def may_import_torch(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    if parts[:2] in (("resnet_core", "nets"), ("resnet_core", "training")) or parts == ("resnet_core", "worker.py"):
        return True
    return parts[:2] == ("resnet_core", "analysis") and path.name != "__init__.py"


def imported_names(path: Path) -> list[tuple[str, int]]:
    """Every module named by an import statement in the file, at any depth (functions included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.module, node.lineno))
    return names


def test_only_the_torch_packages_import_torch():
    offenders = [f"{p.relative_to(ROOT)}:{line}" for p in modules() if not may_import_torch(p)
                 for name, line in imported_names(p) if name.partition(".")[0] == "torch"]
    assert not offenders, f"torch imported outside nets/, training/ and analysis compute modules: {offenders}"


def test_the_torch_free_modules_load_without_torch():
    """Every module outside the torch packages imports in a fresh interpreter without loading torch,
    except the CLI's command modules, which run training and are imported only for their command."""
    def cli_command(p: Path) -> bool:
        return p.parent == ROOT / "resnet_core" / "cli" and p.name not in ("__init__.py", "parser.py")

    torch_free = [dotted(p) for p in modules() if not may_import_torch(p) and not cli_command(p)
                  and p.name != "__main__.py"]
    code = ("import importlib, sys\n"
            f"for name in {torch_free!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        print('torch loaded by', name); break\n"
            "else:\n"
            "    print('clean')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean", out.stdout
    assert "resnet_core.analysis.paths" in torch_free and "dashboard.runtime.session" in torch_free


def test_no_module_imports_another_that_imports_it_back():
    graph: dict[str, set[str]] = {}
    known = {dotted(p) for p in modules()}
    for p in modules():
        graph[dotted(p)] = {n for n, _ in imported_names(p) if n in known and n != dotted(p)}

    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in path and len(path) < 12:
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for m in sorted(graph) if (c := circle_from(m))]
    assert not circles, f"import circle: {' -> '.join(circles[0])}"


@pytest.mark.parametrize("package,loose_limit,min_subpackages", [("resnet_core", 8, 4), ("dashboard", 8, 0)])
def test_each_package_is_a_few_loose_modules_and_folders_by_idea(package, loose_limit, min_subpackages):
    top = ROOT / package
    loose = sorted(p.name for p in top.glob("*.py"))
    subpackages = sorted(p.name for p in top.iterdir() if (p / "__init__.py").exists())
    assert len(loose) <= loose_limit, loose
    assert len(subpackages) >= min_subpackages, subpackages


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


# The packages from the bottom up: a module may import from a package below its own, never above.
# remote/ (the driving side of the worker processes) is torch-free and below the nets it never
# imports; the worker process (resnet_core/worker.py) composes training and analysis above both.
LAYERS = [("errors",), ("config",), ("settings",), ("presets", "data", "records", "__init__"), ("sizing",),
          ("remote",), ("scheduling",), ("nets",), ("training",), ("analysis",), ("lessons",), ("worker",), ("cli",),
          ("__main__", "dashboard")]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def package_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "dashboard":
        return "dashboard"
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_back_up_between_packages():
    upward = []
    for p in modules():
        mine = package_of(dotted(p))
        for name, line in imported_names(p):
            if name.partition(".")[0] not in PACKAGES or package_of(name) == mine:
                continue
            if RANK[package_of(name)] >= RANK[mine]:
                upward.append(f"{p.relative_to(ROOT)}:{line} imports {name}")
    assert not upward, upward
