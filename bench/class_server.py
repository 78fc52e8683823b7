"""``scripts/serve-class.sh`` started for real on a free 127.0.0.1 port: N Streamlit processes behind
Debian's haproxy, as a teacher starts it. For the tests and the benches alike.

The script prints one line per backend (``backend1 127.0.0.1:PORT pid PID log FILE``) and then the
class's URL; ``start_class`` waits for that URL line and returns what it printed.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from streamlit_server import REPO, free_port

SCRIPT = REPO / "scripts" / "serve-class.sh"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
START_S = 180  # N processes importing Streamlit and the app on two shared cores
BACKEND_LINE = re.compile(r"^(backend\d+) 127\.0\.0\.1:(\d+) pid (\d+) log (.+)$")
READY_LINE = re.compile(r"^Residual Lab for a class at (http://\S+)")


@dataclass
class Backend:
    name: str       # the haproxy server name: the SERVERID cookie's value and the response header's
    port: int
    pid: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def established(self) -> int:
        """TCP connections open to this Streamlit process right now, as the process itself sees them."""
        try:
            conns = psutil.Process(self.pid).net_connections(kind="tcp")
        except psutil.Error:
            return 0
        return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port)


@dataclass
class ClassServer:
    url: str
    port: int
    process: subprocess.Popen
    backends: dict[str, Backend]
    output: list[str] = field(default_factory=list)  # everything the script printed, as it came

    def processes(self) -> list[psutil.Process]:
        """Everything the script has started and is running now (haproxy, servers, their workers)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, how: str = "ctrl-c", wait_s: float = 60) -> int:
        """Ctrl-C (SIGINT to the script's process group, what a terminal sends) or SIGTERM to the
        script alone; returns its exit status."""
        if self.process.poll() is None:
            if how == "ctrl-c":
                os.killpg(self.process.pid, signal.SIGINT)
            else:
                self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            kill_tree(self)
            raise


def kill_tree(server: ClassServer) -> None:
    """Last resort after a failed test: nothing it started may outlive it."""
    for proc in server.processes() + [psutil.Process(server.process.pid)]:
        try:
            proc.kill()
        except psutil.Error:
            pass
    server.process.wait(10)


def start_class(log_dir: Path, processes: int = 2, env: dict[str, str] | None = None,
                extra: tuple[str, ...] = ()) -> ClassServer:
    """``bash scripts/serve-class.sh --processes N --port <free>`` on 127.0.0.1, in its own process
    group (as a terminal's foreground job is). ``--no-setup``: the caller already runs from .venv."""
    port = free_port()
    cmd = ["bash", str(SCRIPT), "--processes", str(processes), "--port", str(port), "--address", "127.0.0.1",
           "--log-dir", str(log_dir), "--no-setup", *extra]
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env={**os.environ, "PYTHONPATH": path, **(env or {})})
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keeps draining the pipe after start-up, so the script never blocks on it
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if READY_LINE.match(output[-1]):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(START_S)
    url = next((m.group(1) for m in map(READY_LINE.match, output) if m), None)
    if url is None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        raise RuntimeError("serve-class.sh did not come up:\n" + "\n".join(output))
    backends = {}
    for m in filter(None, map(BACKEND_LINE.match, output)):
        backends[m.group(1)] = Backend(m.group(1), int(m.group(2)), int(m.group(3)), Path(m.group(4)))
    return ClassServer(url, port, process, backends, output)


def wait_for(condition, timeout_s: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s:g} s")
        time.sleep(0.2)
