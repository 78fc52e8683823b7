"""A real server on a free 127.0.0.1 port, started as scripts/app.sh starts it (``python -m
dashboard.serve``: ``streamlit run dashboard/app.py`` with its first worker started at once), and
how to read its page in Chromium: for the tests and the benches alike."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER_START_S = 60
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
MODELS = ("plain-20", "plain-56", "resnet-56")  # the degradation preset, as its cards are labelled
STEP = re.compile(r"^Step (\d+)$")  # the page's step counter


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StreamlitServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_streamlit(log_path: Path, env: dict[str, str] | None = None) -> StreamlitServer:
    """A real server in its own process group (so its worker processes end with it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "dashboard.serve", "--server.port", str(port),  # as scripts/app.sh starts it
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    log = log_path.open("w")
    process = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as reply:
                if reply.status == 200:
                    return StreamlitServer(url, process, log_path)
        except OSError:
            time.sleep(0.2)
    stop_streamlit(process)
    raise RuntimeError(f"streamlit did not answer within {SERVER_START_S} s:\n{log_path.read_text()}")


def stop_streamlit(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # the group we started: the server and its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextmanager
def chromium():
    """Debian's Chromium, driven by Playwright, open for the whole bench (as a teacher's browser is:
    its own start is not the app's)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def step_of(page) -> int:
    """The step the page's counter shows."""
    return int(STEP.match(page.get_by_text(STEP).inner_text().strip()).group(1))


def card_errors(page, models=MODELS) -> dict[str, float]:
    """Model -> training error (%) as the metric cards show it."""
    out = {}
    for card in page.get_by_test_id("stMetric").all():
        text = card.inner_text()
        name = next((m for m in models if m in text), None)
        value = re.search(r"(\d+(?:\.\d+)?) %", text)
        if name and value:
            out[name] = float(value.group(1))
    return out
