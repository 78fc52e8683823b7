"""Shared fixtures.

- ``streamlit_server``: one real ``streamlit run dashboard/app.py`` on a free 127.0.0.1 port for
  the whole session, its log kept so a test can check it holds no traceback.
- ``browser`` / ``page``: Debian's Chromium driven by Playwright (sync API), a fresh 1400x900
  page per test.
- ``app_test``: a factory of ``AppTest``s of the dashboard (optionally opened with a query string),
  run once; the training jobs they started are stopped after the test, and at the end of the
  module Streamlit's resource caches are cleared, which closes the worker pool.

Browser fixtures skip (with the reason) where Chromium or Playwright is missing, and fail in CI.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_S = 60
MODELS = ("plain-20", "plain-56", "resnet-56")  # the degradation preset, as its cards are labelled


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


def start_streamlit(log_path: Path, env: dict[str, str] | None = None, script: str = "dashboard/app.py") -> StreamlitServer:
    """A real server in its own process group (so its worker processes end with it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
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


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    server = start_streamlit(log_path)
    yield server
    stop_streamlit(server.process)


def _playwright():
    # Skipped for someone running pytest by hand without a browser; in CI (and scripts/test.sh,
    # which installs both) a missing browser is a failure, never a quiet skip.
    missing = pytest.fail if os.environ.get("CI") or os.environ.get("RESIDUAL_LAB_REQUIRE_BROWSER") else pytest.skip
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements-dev.txt)")
    return sync_playwright


@pytest.fixture(scope="session")
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    yield page
    context.close()


APP_TIMEOUT_S = 60  # AppTest's default (3 s) is too short for a first run that imports torch


@pytest.fixture(scope="module")
def _streamlit_caches():
    yield
    import streamlit as st

    st.cache_resource.clear()  # on_release closes the server-wide worker pool


@pytest.fixture
def app_test(_streamlit_caches):
    """``app_test(query=None)`` -> an AppTest of dashboard/app.py that has run once."""
    from streamlit.testing.v1 import AppTest

    from dashboard.runtime.jobs import stop_all_jobs

    def make(query: dict[str, str] | None = None):
        at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=APP_TIMEOUT_S)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        return at.run()

    yield make
    stop_all_jobs()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test process, as the trainers use: two would oversubscribe two cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spirals():
    from resnet_core.data import load_dataset

    return load_dataset("spirals", {"n": 600})


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
