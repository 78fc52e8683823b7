"""A class on several processes: ``scripts/serve-class.sh`` starts two Streamlit servers behind
Debian's haproxy. Each browser stays on one backend (its WebSocket included) while both serve
sessions; a run trained through one backend is a cache hit through the other; a backend that hangs
is routed around and one that dies is started again; Ctrl-C and SIGTERM leave nothing running; bad
arguments get one line and exit status 2.

Which backend served a browser is read two ways that do not depend on each other:
- haproxy names the server behind every response in the header ``X-Residual-Lab-Backend``, the
  WebSocket's upgrade response (``/_stcore/stream``, read through Chromium's DevTools protocol)
  included: that is the connection a Streamlit session lives on;
- each Streamlit process's own open TCP connections: the proxy closes server-side HTTP connections
  after each reply, so what stays open to a backend is the WebSockets of its sessions.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest

from dashboard.runtime.class_runs import CACHED_NOTICE
from resnet_core import config

from class_server import BACKEND_LINE, HAPROXY, SCRIPT, ClassServer, kill_tree, start_class, wait_for
from streamlit_client import StreamlitClient

STEP = re.compile(r"^Step (\d+)$")
WAIT_MS = 120_000
HEADER = "x-residual-lab-backend"


def need_haproxy() -> None:
    # As conftest does for Chromium: skipped by hand without it, a failure where the test script
    # (which installs it) or CI runs the suite.
    required = os.environ.get("CI") or config.get("REQUIRE_BROWSER")
    if not Path(HAPROXY).exists():
        (pytest.fail if required else pytest.skip)(f"no haproxy at {HAPROXY} (Debian: apt-get install haproxy)")


@pytest.fixture
def class_server(tmp_path):
    need_haproxy()
    server = start_class(tmp_path / "logs", processes=2, env={"RESIDUAL_LAB_RUN_CACHE": str(tmp_path / "cache")})
    yield server
    if server.process.poll() is None:
        kill_tree(server)


def assert_nothing_left(server: ClassServer, started: list[psutil.Process]) -> None:
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after the script stopped: {[' '.join(p.cmdline()[:4]) for p in left]}"
    for port in [server.port] + [b.port for b in server.backends.values()]:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    for backend in server.backends.values():
        assert "Traceback" not in backend.log(), backend.log()[-3000:]


class Tab:
    """A browser context (its own cookie jar: one student) with one page, recording which backend
    served each HTTP response and each WebSocket upgrade."""

    def __init__(self, browser, url: str, cookie: str | None = None):
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        if cookie:
            self.context.add_cookies([{"name": "SERVERID", "value": cookie, "url": url}])
        self.http: list[str] = []
        self.sockets: list[str] = []
        # Responses from a backend: not the page's own blob: URLs (a component's inline script).
        self.context.on("response", lambda r: self.http.append(r.headers.get(HEADER, "none"))
                        if r.url.startswith("http") else None)
        self.page = self.watch(self.context.new_page())

    def watch(self, page):
        stream_ids: set[str] = set()
        cdp = self.context.new_cdp_session(page)
        cdp.on("Network.webSocketCreated",
               lambda e: stream_ids.add(e["requestId"]) if "/_stcore/stream" in e["url"] else None)

        def upgraded(e):
            if e["requestId"] in stream_ids:
                headers = {k.lower(): v for k, v in e["response"]["headers"].items()}
                self.sockets.append(headers.get(HEADER, "none"))

        cdp.on("Network.webSocketHandshakeResponseReceived", upgraded)
        cdp.send("Network.enable")
        return page

    def open(self, url: str, page=None) -> None:
        page = page or self.page
        page.goto(url)
        page.get_by_text(STEP).wait_for(timeout=WAIT_MS)

    def backends(self) -> set[str]:
        return set(self.http) | set(self.sockets)

    def step(self) -> int:
        return int(STEP.match(self.page.get_by_text(STEP).inner_text().strip()).group(1))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_each_browser_stays_on_one_backend_while_both_serve(class_server, browser):
    server = class_server
    assert sorted(server.backends) == ["backend1", "backend2"]
    link = server.url + "/?preset=degradation"
    tabs = []
    for _ in range(4):  # four students, one after another
        tab = Tab(browser, server.url)
        tab.open(link)
        tabs.append(tab)

    # Interaction goes over the session's WebSocket; a reload is a new session, routed again; a
    # second tab of the same browser carries the same cookie.
    tabs[0].page.get_by_role("button", name="Train", exact=True).click()
    for tab in tabs:
        tab.page.get_by_role("tab", name="Gradients", exact=True).click()
        tab.page.reload()
        tab.page.get_by_text(STEP).wait_for(timeout=WAIT_MS)
    second = tabs[1].watch(tabs[1].context.new_page())
    tabs[1].open(link, second)

    for i, tab in enumerate(tabs):
        assert len(tab.sockets) >= 2, f"tab {i}: {tab.sockets}"  # one session before the reload, one after
        assert len(tab.backends()) == 1, f"tab {i} was served by {Counter(tab.http)}, WebSockets {tab.sockets}"
    assert len(tabs[1].sockets) == 3
    used = Counter(next(iter(tab.backends())) for tab in tabs)
    assert set(used) == {"backend1", "backend2"}, used

    # The backends' own view: the sessions' WebSockets are open to the process the header named.
    open_sockets = {name: used[name] + (name in tabs[1].backends()) for name in server.backends}
    wait_for(lambda: {n: b.established() for n, b in server.backends.items()} == open_sockets, 60,
             f"open connections per backend {open_sockets}")

    started = server.processes()
    assert any("resnet_core.worker" in " ".join(p.cmdline()) for p in started)  # tab 0 trains
    for tab in tabs:
        tab.context.close()
    assert server.stop("ctrl-c") == 130
    assert_nothing_left(server, started)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_trained_through_one_backend_is_a_cache_hit_through_the_other(tmp_path, browser):
    need_haproxy()
    server = start_class(tmp_path / "logs", processes=2, env={"RESIDUAL_LAB_RUN_CACHE": str(tmp_path / "cache")})
    try:
        link = server.url + "/?preset=degradation&steps=30"
        first = Tab(browser, server.url, cookie="backend1")
        first.open(link)
        first.page.get_by_role("button", name="Train", exact=True).click()
        first.page.get_by_text("finished").first.wait_for(timeout=WAIT_MS)
        assert first.step() == 30
        assert first.backends() == {"backend1"}
        assert not first.page.get_by_text(CACHED_NOTICE).count()  # the first session trained it itself

        second = Tab(browser, server.url, cookie="backend2")
        second.open(link)
        second.page.get_by_role("button", name="Train", exact=True).click()
        second.page.get_by_text(CACHED_NOTICE).first.wait_for(timeout=WAIT_MS)
        second.page.get_by_text("finished").first.wait_for(timeout=WAIT_MS)
        assert second.step() == 30
        assert second.backends() == {"backend2"}
        for tab in (first, second):
            tab.context.close()
        started = server.processes()
        assert server.stop("sigterm") == 143
        assert_nothing_left(server, started)
    finally:
        if server.process.poll() is None:
            kill_tree(server)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_stops_servers_workers_and_proxy(class_server):
    """A session opened through the proxy (Streamlit's own WebSocket protocol) presses Train, so a
    training worker runs under a backend when the script is told to stop."""
    server = class_server
    client = StreamlitClient(server.url + "/")
    try:
        client.run(timeout=120)
        client.click("Train", timeout=120)
        wait_for(lambda: any("resnet_core.worker" in " ".join(p.cmdline()) for p in server.processes()),
                 120, "a training worker under a backend")
        started = server.processes()
        names = Counter(os.path.basename(p.cmdline()[0]) for p in started)
        assert names["haproxy"] == 1, names
    finally:
        client.close()
    assert server.stop("sigterm") == 143
    assert_nothing_left(server, started)


def served_by(server: ClassServer, cookie: str) -> str | None:
    """The backend that answers a browser holding ``SERVERID=cookie``; None while nothing answers."""
    request = urllib.request.Request(server.url + "/_stcore/health", headers={"Cookie": f"SERVERID={cookie}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.headers.get(HEADER)
    except OSError:
        return None


def latest(server: ClassServer, name: str) -> tuple[int, int]:
    """(port, pid) of the backend as the script last announced it."""
    m = [m for m in map(BACKEND_LINE.match, list(server.output)) if m and m.group(1) == name][-1]
    return int(m.group(2)), int(m.group(3))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_backend_that_stops_answering_is_routed_around_and_one_that_dies_restarts(class_server):
    server = class_server
    first = server.backends["backend1"]
    assert served_by(server, "backend1") == "backend1"

    os.kill(first.pid, signal.SIGSTOP)  # hung: its port still accepts, nothing answers
    try:
        wait_for(lambda: served_by(server, "backend1") == "backend2", 120, "health checks took backend1 out")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    wait_for(lambda: served_by(server, "backend1") == "backend1", 120, "backend1 back in")

    os.killpg(first.pid, signal.SIGKILL)  # the process and its workers gone: the script starts it again
    wait_for(lambda: latest(server, "backend1")[1] != first.pid, 120, "backend1 started again")
    port, pid = latest(server, "backend1")
    assert port == first.port
    again = psutil.Process(pid)
    wait_for(lambda: served_by(server, "backend1") == "backend1", 120, "the new backend1 serves its cookie")

    started = server.processes()
    assert again in started
    assert server.stop("sigterm") == 143
    assert_nothing_left(server, started)


@pytest.mark.parametrize("args, says", [
    (["--processes", "0"], "--processes must be a whole number from 1 to 64"),
    (["--processes", "two"], "--processes must be a whole number from 1 to 64"),
    (["--port", "70000"], "--port must be a whole number from 1 to 65535"),
    (["--port"], "--port needs a value"),
    (["--proceses", "2"], "unknown argument '--proceses'"),
])
def test_bad_arguments_get_one_line_and_status_2(args, says):
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert done.stdout == ""


def test_a_port_in_use_is_one_line_and_nothing_started(tmp_path):
    need_haproxy()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(["bash", str(SCRIPT), "--port", str(port), "--address", "127.0.0.1", "--no-setup",
                               "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert not list(tmp_path.glob("backend*.log"))  # no server was started



def open_tab_socket(port: int) -> tuple[socket.socket, str]:
    """A WebSocket upgrade on /_stcore/stream (what a tab opens for its session): the socket, left
    open, and the status line the proxy answered."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: streamlit\r\n\r\n")
    reply = b""
    while b"\r\n" not in reply:
        chunk = s.recv(1024)
        if not chunk:
            break
        reply += chunk
    return s, reply.split(b"\r\n", 1)[0].decode()


def test_one_computer_holds_at_most_its_tabs_at_the_proxy(tmp_path):
    """Issue 20, item 3: one client opened 40 sessions in 11 s. The proxy lets one address hold
    --tabs-per-client sessions (WebSockets) at once; one more is refused with 429 until one closes."""
    need_haproxy()
    server = start_class(tmp_path / "logs", processes=1, env={"RESIDUAL_LAB_RUN_CACHE": str(tmp_path / "cache")},
                         extra=("--tabs-per-client", "2"))
    opened = []
    try:
        for _ in range(2):
            opened.append(open_tab_socket(server.port))
        assert [status.split()[1] for _, status in opened] == ["101", "101"]
        extra, status = open_tab_socket(server.port)
        extra.close()
        assert status.split()[1] == "429"
        opened.pop()[0].close()
        wait_for(lambda: (t := open_tab_socket(server.port))[1].split()[1] == "101" and opened.append(t) is None,
                 timeout_s=10)
    finally:
        for s, _ in opened:
            s.close()
        kill_tree(server)
