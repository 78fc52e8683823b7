"""Every environment variable Residual Lab reads: one table, each variable typed and checked here
alone (``docs/configuration.md`` shows the same table; a test keeps the two and the code in step).

``get(name)`` gives the variable ``RESIDUAL_LAB_`` + name as its type, or its default where it is not
set (``None`` where the default is worked out from the machine by the one function that uses it).
It reads the environment when asked, so a worker process or a test sees the environment it was
given; a value that is not what the table allows is a ``ConfigError`` naming the variable, what it
allows and what it got, never a silent fallback.
"""
from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_core.errors import UserError

PREFIX = "RESIDUAL_LAB_"


class ConfigError(UserError):
    """An environment variable with a value the table does not allow."""


@dataclass(frozen=True)
class Variable:
    name: str                        # without the prefix
    kind: str                        # "int", "number", "flag", "path", "text" or "choice"
    default: Any
    help: str
    low: float | None = None         # int and number: inclusive bounds
    high: float | None = None
    choices: tuple[str, ...] = ()    # choice: the values allowed ("" is "not set")

    @property
    def env(self) -> str:
        return PREFIX + self.name

    def parse(self, raw: str) -> Any:
        if self.kind == "path":
            return Path(raw).expanduser()
        if self.kind == "text":
            return raw
        if self.kind == "flag":
            if raw not in ("0", "1"):
                raise ConfigError(f"{self.env} must be 0 or 1 (got {raw!r})")
            return raw == "1"
        if self.kind == "choice":
            if raw not in self.choices:
                raise ConfigError(f"{self.env} must be one of {', '.join(c for c in self.choices if c)} (got {raw!r})")
            return raw
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        whole = self.kind == "int"
        if not math.isfinite(value) or (whole and value != int(value)) or \
                (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            bounds = f"from {self.low:g}" + (f" to {self.high:g}" if self.high is not None else " up")
            raise ConfigError(f"{self.env} must be {'a whole number' if whole else 'a number'} {bounds} (got {raw!r})")
        return int(value) if whole else value


VARIABLES: tuple[Variable, ...] = (
    Variable("PROCESSES", "int", None, "worker processes of one server, for every session's training and analyses "
             "(default: one per core but one, at least one)", low=1, high=256),
    Variable("RUN_MEMORY_MB", "int", None, "memory one run may take, estimated before it starts (default: three "
             "quarters of the machine's memory shared by the processes that may run at once)", low=1),
    Variable("SERVER_MEMORY_MB", "int", None, "memory a server's worker processes may hold together, every "
             "session's models in them, split evenly between the processes (default: three quarters of the "
             "machine's)", low=1),
    Variable("RUNS_PER_CLIENT", "int", 3, "runs one computer's tabs may train at once on a server", low=1),
    Variable("WORKER_MEMORY_MB", "int", None, "the data limit a worker process sets on itself; 0: none "
             "(default: the run budget and a quarter more)", low=0),
    Variable("WORKER_NICE", "int", 10, "how much lower a server's worker processes' CPU priority is than the "
             "server's: pages first, training second", low=0, high=19),
    Variable("RUNS", "path", None, "the run folders the Records tab may replay (default: runs/ under the project)"),
    Variable("REPLAY_MB", "int", 128, "the largest file of a run folder a replay reads, in MB", low=1),
    Variable("RUN_CACHE", "path", None, "the run cache's folder, one for all server processes "
             "(default: runs/cache under the project)"),
    Variable("RUN_CACHE_MB", "number", 500.0, "the run cache's size; least recently used runs go first; "
             "0 turns the cache off", low=0),
    Variable("SESSION_FILES_MB", "int", 256, "a live run's files (what its downloads hold) at most", low=1),
    Variable("ENGINE", "choice", "", "the one selector of the fast paths: autograd trains every net through its "
             "modules and autograd, without the written-out MLP pass and without stacking a sweep's seeds "
             "(the same numbers, slower)", choices=("", "autograd")),
    Variable("PLUGINS", "text", "", "modules (comma-separated, importable from the Python path) that the command "
             "line and every worker process import as they start: a block variant of one's own "
             "(docs/architecture.md, 'Adding a block variant')"),
    Variable("REQUIRE_BROWSER", "flag", False, "the tests: a missing Chromium fails the browser tests rather than "
             "skipping them (scripts/test.sh sets it)"),
)
_BY_NAME = {v.name: v for v in VARIABLES}


def get(name: str) -> Any:
    """``RESIDUAL_LAB_<name>`` as its type, or its default where it is unset or empty."""
    variable = _BY_NAME[name]
    raw = os.environ.get(variable.env, "").strip()
    return variable.parse(raw) if raw else variable.default


def load_plugins() -> list[str]:
    """Import the modules RESIDUAL_LAB_PLUGINS names (once each; they register what they define);
    the names imported. One that cannot be imported is a ConfigError naming it and why."""
    names = [n.strip() for n in get("PLUGINS").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the user's module: its failure, in one line
            raise ConfigError(f"{env_name('PLUGINS')}: cannot import {name!r} ({type(exc).__name__}: {exc})") from exc
    return names


def env_name(name: str) -> str:
    """The full name of a variable of the table (for a message, or a child's environment)."""
    return _BY_NAME[name].env
