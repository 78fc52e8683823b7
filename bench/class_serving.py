"""The processes serving a class, for the load tests: one server as ``scripts/app.sh`` starts it, or
``scripts/serve-class.sh``'s backends and haproxy; the CPU time each took (the servers, their
training workers, the proxy), and their Python stacks when a page hangs."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from class_server import kill_tree as stop_class
from class_server import start_class
from streamlit_server import start_streamlit, stop_streamlit


@contextmanager
def server(log_path: Path, env: dict[str, str] | None = None):
    """A real server (the tests' ``start_streamlit``), stopped with a plain SIGTERM to the server
    alone: whatever it started must go with it, and the fault tests check that it does."""
    srv = start_streamlit(log_path, env)
    try:
        yield srv.url, psutil.Process(srv.process.pid)
    finally:
        srv.process.terminate()
        try:
            srv.process.wait(10)
        except subprocess.TimeoutExpired:
            stop_streamlit(srv.process)


class Served:
    """The processes serving the class, one server or serve-class.sh's backends and proxy; CPU time
    of the servers themselves and of everything under them (training and analysis workers)."""

    def __init__(self, servers: list[psutil.Process], proxy: psutil.Process | None = None):
        self.servers, self.proxy = servers, proxy
        self._seen: dict[int, psutil.Process] = {}
        self._times: dict[int, float] = {}

    def _sample(self) -> None:
        for server in self.servers:
            try:
                for child in server.children(recursive=True):
                    self._seen.setdefault(child.pid, child)
            except psutil.Error:
                pass
        for pid, proc in list(self._seen.items()):
            try:
                self._times[pid] = sum(proc.cpu_times()[:2])
            except psutil.Error:
                pass  # ended: its last sample stands

    def cpu(self) -> dict[str, float]:
        self._sample()

        def total(procs) -> float:
            out = 0.0
            for proc in procs:
                try:
                    out += sum(proc.cpu_times()[:2])
                except psutil.Error:
                    pass
            return out

        return {"servers": total(self.servers), "workers": sum(self._times.values()),
                "proxy": total([self.proxy]) if self.proxy else 0.0}


def stacks(served: Served, log_dir: Path) -> str:
    """Where the servers' Python stacks went, dumped now by py-spy where it is installed (a
    developer's tool, not a dependency): what a server was doing while an interaction hung."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return ""
    path = log_dir / f"stacks-{time.monotonic():.0f}.txt"
    with path.open("w") as out:
        for server in served.servers:
            subprocess.run([spy, "dump", "--pid", str(server.pid)], stdout=out, stderr=subprocess.STDOUT, timeout=60)
    return f" (the servers' stacks: {path})"


@contextmanager
def serving(through_proxy: int, log_dir: Path, env: dict[str, str] | None = None):
    """(url, Served): one plain ``streamlit run`` (through_proxy 0) or serve-class.sh with N processes."""
    if not through_proxy:
        with server(log_dir / "server.log", env) as (url, proc):
            yield url, Served([proc]), [log_dir / "server.log"]
        return
    # The load's sessions all come from this one address, which the class's per-computer limits (a
    # computer's tabs at the proxy, its runs training at once) would cap; a real class comes from many.
    cls = start_class(log_dir, processes=through_proxy, env={**(env or {}), "RESIDUAL_LAB_RUNS_PER_CLIENT": "1000"},
                      extra=("--tabs-per-client", "0"))
    try:
        procs = {p.pid: p for p in cls.processes()}
        servers = [procs[b.pid] for b in cls.backends.values()]
        proxy = next(p for p in procs.values() if "haproxy" in p.name())
        yield cls.url, Served(servers, proxy), [b.log_path for b in cls.backends.values()]
    finally:
        try:
            cls.stop("sigterm")
        except subprocess.TimeoutExpired:
            stop_class(cls)
