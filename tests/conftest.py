"""Shared fixtures.

- ``run_cache_folder``: the run cache of the whole test session, a temporary folder.
- ``streamlit_server``: one real ``streamlit run dashboard/app.py`` on a free 127.0.0.1 port for
  the whole session, its log kept so a test can check it holds no traceback.
- ``browser`` / ``page``: Debian's Chromium driven by Playwright (sync API), a fresh 1400x900
  page per test.
- ``tiny_runs``: five small finished runs by key, for the run cache's tests.
- ``app_test``: a factory of ``AppTest``s of the dashboard (optionally opened with a query string),
  run once; the training jobs they started are stopped after the test, and at the end of the
  module Streamlit's resource caches are cleared, which closes the worker pool.

Browser fixtures skip (with the reason) where Chromium or Playwright is missing, and fail in CI.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet_core import config

# bench/ is on the tests' path (pytest.ini): the server and browser helpers the benches use too.
from streamlit_server import (CHROMIUM, CHROMIUM_ARGS, MODELS, REPO, StreamlitServer,  # noqa: F401
                              card_errors, free_port, start_streamlit, stop_streamlit)


@pytest.fixture(scope="session", autouse=True)
def run_cache_folder(tmp_path_factory):
    """One run cache for the test session, in a temporary folder: the tests' runs are served to each
    other as a class's are (the servers and AppTests inherit it), and none to a later test session."""
    before = os.environ.get("RESIDUAL_LAB_RUN_CACHE")
    os.environ["RESIDUAL_LAB_RUN_CACHE"] = str(tmp_path_factory.mktemp("run-cache"))
    yield Path(os.environ["RESIDUAL_LAB_RUN_CACHE"])
    if before is None:
        os.environ.pop("RESIDUAL_LAB_RUN_CACHE", None)
    else:
        os.environ["RESIDUAL_LAB_RUN_CACHE"] = before


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    server = start_streamlit(log_path)
    yield server
    stop_streamlit(server.process)


def _playwright():
    # Skipped for someone running pytest by hand without a browser; in CI (and scripts/test.sh,
    # which installs both) a missing browser is a failure, never a quiet skip.
    missing = pytest.fail if os.environ.get("CI") or config.get("REQUIRE_BROWSER") else pytest.skip
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

    from dashboard.runtime.session import stop_all_sessions

    def make(query: dict[str, str] | None = None):
        at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=APP_TIMEOUT_S)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        return at.run()

    yield make
    stop_all_sessions()


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
    from resnet_core.training.tensors import load_dataset

    return load_dataset("spirals", {"n": 600})


@pytest.fixture(scope="module")
def tiny_runs():
    """Five small finished runs of five seeds, by key: the run cache's tests (``run_cache_runs``)."""
    from run_cache_runs import tiny_runs_by_key

    return tiny_runs_by_key()
