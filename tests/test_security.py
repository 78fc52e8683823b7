"""Security rules checked on the source itself: nothing is unpickled, no user text becomes HTML,
uploads are capped (issue 5)."""
import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("resnet_core", "dashboard", "bench") for p in (ROOT / d).rglob("*.py"))


def calls(tree: ast.AST, name: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if called == name:
                yield node


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_is_unpickled(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve") for n in names), path
    for call in calls(tree, "load"):
        if isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") == "torch":
            kw = {k.arg: k.value for k in call.keywords}
            assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, path
    for name in ("load", "fromfile", "frombuffer"):
        for call in calls(tree, name):
            for k in call.keywords:
                if k.arg == "allow_pickle":
                    assert isinstance(k.value, ast.Constant) and k.value.value is False, path


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_html_is_only_ever_a_fixed_string(path):
    """Where unsafe_allow_html is on, the markup is a literal or a module constant, never user text."""
    tree = ast.parse(path.read_text())
    constants = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name) and t.id.isupper()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and any(k.arg == "unsafe_allow_html" and getattr(k.value, "value", False)
                                              for k in node.keywords):
            body = node.args[0] if node.args else None
            assert body is not None and fixed(body, constants), f"{path}:{node.lineno} renders non-constant HTML"


def fixed(node: ast.AST, constants: set[str]) -> bool:
    """A string literal, a module constant, or one of them joined or chosen between (a stylesheet)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return fixed(node.left, constants) and fixed(node.right, constants)
    if isinstance(node, ast.IfExp):
        return fixed(node.body, constants) and fixed(node.orelse, constants)
    return False


def test_uploads_are_capped():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] <= 10
