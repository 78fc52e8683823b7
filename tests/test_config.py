"""The environment variables: one table (resnet_core/config.py), read by it alone, shown in
docs/configuration.md, and a bad value is one line naming the variable."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_core import config
from resnet_core.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"RESIDUAL_LAB_[A-Z][A-Z_]*[A-Z]")


def project_files() -> list[Path]:
    found = [p for d in ("resnet_core", "dashboard", "scripts", "bench", "tests", "docs") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".sh", ".md") and p.is_file()]
    return found + [ROOT / "README.md", ROOT / ".ci" / "run"]


def test_every_variable_named_anywhere_is_in_the_table():
    known = {v.env for v in config.VARIABLES}
    named = {m for p in project_files() for m in NAME.findall(p.read_text(errors="replace"))}
    assert named - known == set(), "named but not in resnet_core/config.py's table"


def test_only_the_config_module_reads_them():
    readers = [str(p.relative_to(ROOT)) for d in ("resnet_core", "dashboard") for p in (ROOT / d).rglob("*.py")
               if re.search(r"environ(\.get)?[\[(]\s*[\"']RESIDUAL_LAB_", p.read_text()) and p.name != "config.py"]
    assert readers == []


def test_the_docs_table_is_the_code_table():
    rows = [line for line in (ROOT / "docs" / "configuration.md").read_text().splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `([A-Z_]+)`", r).group(1) for r in rows] == [v.env for v in config.VARIABLES]
    for row, variable in zip(rows, config.VARIABLES):
        assert variable.help in row


@pytest.mark.parametrize("name,raw,words", [
    ("PROCESSES", "0", "RESIDUAL_LAB_PROCESSES must be a whole number from 1 to 256 (got '0')"),
    ("RUN_CACHE_MB", "lots", "RESIDUAL_LAB_RUN_CACHE_MB must be a number from 0 up (got 'lots')"),
    ("WORKER_NICE", "2.5", "a whole number"),
    ("REQUIRE_BROWSER", "yes", "RESIDUAL_LAB_REQUIRE_BROWSER must be 0 or 1 (got 'yes')"),
    ("ENGINE", "python", "RESIDUAL_LAB_ENGINE must be one of autograd (got 'python')"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, name, raw, words):
    monkeypatch.setenv(f"RESIDUAL_LAB_{name}", raw)
    with pytest.raises(ConfigError) as error:
        config.get(name)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_values_are_typed_and_unset_is_the_default(monkeypatch):
    monkeypatch.setenv("RESIDUAL_LAB_RUN_CACHE_MB", "12.5")
    monkeypatch.setenv("RESIDUAL_LAB_RUNS", "/srv/runs")
    monkeypatch.delenv("RESIDUAL_LAB_REPLAY_MB", raising=False)
    assert config.get("RUN_CACHE_MB") == 12.5 and config.get("RUNS") == Path("/srv/runs")
    assert config.get("REPLAY_MB") == 128


def test_the_cli_says_a_bad_variable_in_one_line():
    """A bad value reaches a user as one line and exit 2, like any other mistake of theirs."""
    out = subprocess.run([sys.executable, "-m", "resnet_core", "sweep", "--depths", "4", "--seeds", "0",
                          "--steps", "2", "--out", "/nonexistent/never-written"],
                         env={"PATH": "/usr/bin:/bin", "RESIDUAL_LAB_ENGINE": "maybe"},
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: RESIDUAL_LAB_ENGINE must be one of autograd (got 'maybe')"], out.stderr
